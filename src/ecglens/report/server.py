"""``ecglens serve``'s application (FastAPI): upload or browse records and see their reports; review prototypes.

Everything the viewer keeps lives in its working directory ``directory``:
``gallery/`` (the prototype gallery, drawn once on first view), ``ratings.csv``
(the review form's ratings, ``ecglens.explain.ratings`` schema) and, only when
the uploader asks, ``uploads/<name>/`` (the record's files and its report). An
upload is otherwise read from a temporary folder inside ``directory`` that is
removed at once. Errors reach the page as one clear sentence; tracebacks go to
the server's log only.
"""
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import ECGError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_FILES = 4
DRAIN_FACTOR = 4  # an oversized body is read (and dropped) up to this many times the limit, so the refusal is seen
CACHED_REPORTS = 32
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
log = logging.getLogger("ecglens.serve")


class UploadError(Exception):
    """A bad upload: ``status`` (400 or 413) and a message for the page."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """(fields, files) of a multipart/form-data body, in memory: files as (file name, bytes)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError("expected a form upload (multipart/form-data)")
    parts: list[dict[str, Any]] = []
    header: list[bytearray] = [bytearray(), bytearray()]

    def begin():
        parts.append({"headers": {}, "data": bytearray()})

    def header_end():
        parts[-1]["headers"][bytes(header[0]).lower()] = bytes(header[1])
        header[0].clear()
        header[1].clear()

    callbacks = {"on_part_begin": begin,
                 "on_header_field": lambda d, a, b: header[0].extend(d[a:b]),
                 "on_header_value": lambda d, a, b: header[1].extend(d[a:b]),
                 "on_header_end": header_end,
                 "on_part_data": lambda d, a, b: parts[-1]["data"].extend(d[a:b])}
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors for malformed bodies
        raise UploadError(f"the upload could not be parsed ({type(exc).__name__})") from None
    fields, files = {}, []
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disposition:
            filename = disposition[b"filename"].decode("utf-8", "replace")
            if filename:
                files.append((filename, bytes(part["data"])))
        else:
            fields[name] = bytes(part["data"]).decode("utf-8", "replace")
    return fields, files


def check_files(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The uploaded files with safe names and supported types (``UploadError`` naming what is wrong)."""
    from ..io.reader import SUPPORTED_SUFFIXES

    if not files:
        raise UploadError("no file was uploaded: choose a record (for WFDB, the .hea and its .dat together)")
    if len(files) > MAX_UPLOAD_FILES:
        raise UploadError(f"{len(files)} files uploaded; at most {MAX_UPLOAD_FILES} (one record and its companions)")
    out = []
    for name, data in files:
        base = Path(name.replace("\\", "/")).name
        if not SAFE_NAME.match(base):
            raise UploadError(f"{name!r}: file names may hold letters, digits, '.', '_' and '-' only")
        if Path(base).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise UploadError(f"{base}: unsupported file type {Path(base).suffix or '(no suffix)'!r}; supported: "
                              f"{', '.join(SUPPORTED_SUFFIXES)}")
        if not data:
            raise UploadError(f"{base}: the file is empty")
        out.append((base, data))
    return out


def main_file(names: list[str]) -> str:
    """Which of the uploaded files is the record to read: its WFDB header when there is one."""
    headers = [n for n in names if n.lower().endswith(".hea")]
    if len(headers) > 1:
        raise UploadError(f"{len(headers)} headers uploaded ({', '.join(headers)}); upload one record at a time")
    if headers:
        return headers[0]
    if len(names) > 1:
        raise UploadError(f"{len(names)} files but no .hea header: upload one record at a time")
    return names[0]


class Viewer:
    """The viewer's state: the working directory, the shared ``Reporter`` and caches, one report at a time."""

    def __init__(self, directory: str | os.PathLike, reporter, records: str | os.PathLike | None = None,
                 gallery_model: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.reporter = reporter
        self.records = None if records is None else Path(records).resolve()
        self.gallery_model = gallery_model
        self.max_upload_bytes = int(max_upload_bytes)
        self.lock = threading.Lock()  # models, matplotlib and the gallery build: one at a time
        self.cache: OrderedDict[tuple, str] = OrderedDict()

    # -- records ---------------------------------------------------------------------------------------------

    def record_list(self) -> list[str]:
        from ..io import find_records

        if self.records is None:
            return []
        return [str(p.relative_to(self.records)) for p in find_records(self.records)]

    def record_path(self, relative: str) -> Path:
        """A record inside the browsed folder (``ECGError`` for anything outside it or not listed)."""
        if self.records is None:
            raise ECGError(relative, "no folder of records is being browsed (start with --records DIR)")
        path = (self.records / relative).resolve()
        if self.records not in path.parents or relative not in self.record_list():
            raise ECGError(relative, "not a record of the browsed folder")
        return path

    def report_html(self, path: Path, name: str | None = None, back: str = "/", rate=None, units=None,
                    cache: bool = True) -> str:
        """A record's page (browsed records are cached by file identity: path, time and size)."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, back, rate, units)
        with self.lock:
            if cache and key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
            html = self.reporter.build_file(path, sampling_rate=rate, units=units, name=name, back=back).html
            if cache:
                self.cache[key] = html
                while len(self.cache) > CACHED_REPORTS:
                    self.cache.popitem(last=False)
        return html

    def upload(self, fields: dict[str, str], files: list[tuple[str, bytes]]) -> str:
        """Read an uploaded record from a temporary folder inside the working directory and return its page;
        with ``keep`` the files and the page are kept in ``uploads/<record>/``."""
        from ..atomic import write_bytes_atomic, write_text_atomic

        files = check_files(files)
        main = main_file([n for n, _ in files])
        rate = _number(fields.get("rate"), "sampling rate")
        units = fields.get("units") or None
        if units not in (None, "uV", "mV", "V"):
            raise UploadError(f"units must be uV, mV or V, got {units!r}")
        with tempfile.TemporaryDirectory(dir=self.directory, prefix=".upload-") as tmp:
            for name, data in files:
                (Path(tmp) / name).write_bytes(data)
            try:
                html = self.report_html(Path(tmp) / main, name=main, back="/", rate=rate, units=units, cache=False)
            except ECGError as exc:  # name the uploaded file, not the temporary folder it was read from
                shown = Path(exc.path).name if exc.path and exc.path.startswith(tmp) else (exc.path or main)
                raise ECGError(shown, exc.problem.replace(tmp + os.sep, "")) from None
            html = html.replace(tmp + os.sep, "")  # messages on the page name the uploaded files only
        if fields.get("keep"):
            target = self.directory / "uploads" / Path(main).stem
            target.mkdir(parents=True, exist_ok=True)
            for name, data in files:
                write_bytes_atomic(target / name, data)
            write_text_atomic(target / "report.html", html)
        return html

    # -- prototype gallery -----------------------------------------------------------------------------------

    def gallery(self) -> list[Any]:
        """The gallery items, drawn into ``gallery/`` the first time."""
        from ..explain.gallery import ITEMS_FILE, read_gallery, write_gallery

        folder = self.directory / "gallery"
        if self.gallery_model is None:
            raise ECGError(None, "no ProtoECGNet model is loaded, so there is no prototype gallery")
        with self.lock:
            if not (folder / ITEMS_FILE).is_file():
                log.info("drawing the prototype gallery of %s into %s", self.gallery_model, folder)
                write_gallery(self.gallery_model, folder, progress=True)
            return read_gallery(folder)

    def gallery_image(self, name: str) -> Path:
        folder = self.directory / "gallery"
        path = folder / name
        if not SAFE_NAME.match(name) or not name.endswith(".png") or not path.is_file():
            raise ECGError(name, "no such gallery image")
        return path

    def rate(self, fields: dict[str, str]) -> str:
        """Append one rating from the review form to ``ratings.csv``; returns the prototype's id."""
        from ..explain.ratings import PrototypeRating, append_ratings

        items = {i.prototype: i for i in self.gallery()}
        item = items.get(fields.get("prototype", ""))
        if item is None:
            raise UploadError(f"unknown prototype {fields.get('prototype', '')!r}")
        try:
            rating = PrototypeRating(prototype=item.prototype, branch=item.branch, statement=item.statement,
                                     representativeness=_score(fields.get("representativeness"), "representativeness"),
                                     clarity=_score(fields.get("clarity"), "clarity"),
                                     comment=fields.get("comment", "").strip(), reviewer=fields.get("reviewer", "").strip())
        except ValueError as exc:
            raise UploadError(str(exc)) from None
        with self.lock:
            append_ratings(self.directory / "ratings.csv", [rating])
        return item.prototype


def _number(text: str | None, what: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise UploadError(f"{what} {text!r} is not a number") from None
    if not 0 < value < 1e5:
        raise UploadError(f"{what} {value:g} is out of range")
    return value


def _score(text: str | None, what: str) -> int:
    if text is None or not text.strip():
        raise UploadError(f"{what}: choose a score from 1 to 5")
    try:
        return int(text)
    except ValueError:
        raise UploadError(f"{what} {text!r} is not a whole number from 1 to 5") from None


def create_app(viewer: Viewer):
    """The FastAPI application over ``viewer``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .render import render

    app = FastAPI(title="ecglens viewer", docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, code: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(render(template, **context), status_code=code)

    def error_page(message: str, status: int) -> HTMLResponse:
        return page("message.html", status, title="Cannot do that" if status < 500 else "Server error",
                    message=message, status=status)

    @app.exception_handler(ECGError)
    async def ecg_error(request: Request, exc: ECGError):
        return error_page(str(exc), 400)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        return error_page(exc.message, exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'/'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return error_page(f"bad request ({where})", 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_page(str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("error serving %s", request.url.path)
        return error_page(f"the server could not complete this request ({type(exc).__name__}); "
                          "details are in the server's log", 500)

    @app.get("/", response_class=HTMLResponse)
    def home():
        kept = sorted(p.parent.name for p in (viewer.directory / "uploads").glob("*/report.html"))
        return page("home.html", max_mb=viewer.max_upload_bytes / 2 ** 20, browsing=viewer.records is not None,
                    gallery=viewer.gallery_model is not None, kept=kept, directory=str(viewer.directory))

    @app.post("/upload", response_class=HTMLResponse)
    async def upload(request: Request):
        body = await _read_limited(request, viewer.max_upload_bytes)
        fields, files = parse_multipart(body, request.headers.get("content-type", ""))
        return HTMLResponse(await run_in_threadpool(viewer.upload, fields, files))

    @app.get("/uploads/{name}", response_class=HTMLResponse)
    def kept_upload(name: str):
        path = viewer.directory / "uploads" / name / "report.html"
        if not SAFE_NAME.match(name) or not path.is_file():
            raise ECGError(name, "no kept upload of that name")
        return HTMLResponse(path.read_text(encoding="utf-8"))

    @app.get("/records", response_class=HTMLResponse)
    def records():
        if viewer.records is None:
            raise ECGError(None, "no folder of records is being browsed (start the viewer with --records DIR)")
        return page("records.html", folder=str(viewer.records), records=viewer.record_list())

    @app.get("/records/view", response_class=HTMLResponse)
    async def record(path: str):
        target = viewer.record_path(path)
        return HTMLResponse(await run_in_threadpool(viewer.report_html, target, path, "/records"))

    @app.get("/gallery", response_class=HTMLResponse)
    async def gallery(saved: str = ""):
        items = await run_in_threadpool(viewer.gallery)
        return page("gallery.html", items=items, saved=saved, ratings=str(viewer.directory / "ratings.csv"))

    @app.get("/gallery/img/{name}")
    def gallery_image(name: str):
        return FileResponse(viewer.gallery_image(name), media_type="image/png")

    @app.post("/gallery/rate")
    async def rate(request: Request):
        body = await _read_limited(request, 64 * 1024)
        fields = _form_fields(body, request.headers.get("content-type", ""))
        prototype = await run_in_threadpool(viewer.rate, fields)
        anchor = re.sub(r"[^A-Za-z0-9_-]", "-", prototype)
        return RedirectResponse(f"/gallery?saved={prototype}#p-{anchor}", status_code=303)

    return app


def _form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """Fields of an urlencoded or multipart form."""
    from urllib.parse import parse_qsl

    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return parse_multipart(body, content_type)[0]


async def _read_limited(request, limit: int) -> bytes:
    """The request body, refused with 413 over ``limit`` bytes (an oversized body is drained up to
    ``DRAIN_FACTOR`` times the limit so the browser sees the refusal instead of a reset connection)."""
    declared = request.headers.get("content-length")
    message = f"the upload is larger than the {limit / 2 ** 20:.1f} MB limit"
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_FACTOR * limit:
        raise UploadError(message, 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_FACTOR * limit:
            break
    if size > limit:
        raise UploadError(message, 413)
    return b"".join(chunks)


def serve(viewer: Viewer, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the viewer with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(viewer), host=host, port=port, log_level="info")


def clean_uploads_tmp(directory: str | os.PathLike) -> None:
    """Remove temporary upload folders an interrupted server left in ``directory``."""
    for stale in Path(directory).glob(".upload-*"):
        shutil.rmtree(stale, ignore_errors=True)
