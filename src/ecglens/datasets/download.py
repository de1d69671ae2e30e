"""Download PTB-XL from PhysioNet and verify a copy against its ``SHA256SUMS.txt``.

Only the standard library's ``urllib`` is used. Downloads are resumable: bytes
go to ``<folder>/.ecglens-partial/<name>`` (a hidden folder, so a listed
``x.part`` never meets ``x``'s partial download) and an interrupted transfer
continues with an HTTP ``Range`` request (a server that ignores it sends the
whole file, which then replaces the partial one). Every file is checked against
its SHA-256 before it takes its final name, by rename; a mismatch deletes it and
fetches it once more. A rerun checks every file present, so no fsync is needed.

Nothing runs unbounded: a file gets ``retries`` failed transfers in all (a
server that keeps dropping the connection or answers a resume with the wrong
byte range ends in an ``ECGError``), and a body longer than ``max_bytes`` is cut
off with an error. Names in the checksum list that are unsafe (absolute, ``..``,
NUL or control characters, a trailing ``/``, a component over 255 bytes, a name
that is both a file and a folder, the checksum list itself) are refused one by
one and reported while the others download. Symbolic links inside the
destination are never followed: a folder that is one refuses its files, a file
or partial download that is one is replaced.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from ..errors import ECGError

PTBXL_URL = "https://physionet.org/files/ptb-xl/1.0.3/"
SUMS_FILE = "SHA256SUMS.txt"
PARTIAL_DIR = ".ecglens-partial"
MAX_FILE_BYTES = 1 << 30  # PTB-XL's largest file is under 10 MB
MAX_SUMS_BYTES = 64 << 20  # PTB-XL's list is about 4 MB
_CHUNK = 1 << 16
_NETWORK_ERRORS = (http.client.HTTPException, OSError)  # OSError covers URLError, timeouts, resets
_RETRY_HTTP = (429, 500, 502, 503, 504)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unsafe(rel: str) -> str | None:
    """Why a listed name cannot be written inside the destination, or None when it can."""
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return "holds a NUL or control character"
    if rel.startswith("/"):
        return "is an absolute path"
    if "\\" in rel:
        return "uses a backslash"
    if rel.endswith("/"):
        return "ends in '/' (a folder, not a file)"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component"
    if any(len(p.encode()) > 255 for p in parts):
        return "has a component longer than 255 bytes"
    if PARTIAL_DIR in parts:
        return f"uses {PARTIAL_DIR!r}, where partial downloads go"
    if rel == SUMS_FILE:
        return "is the checksum list itself, which cannot verify itself"
    return None


def _folders(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:k]) for k in range(1, len(parts))]


def parse_sha256sums(text: str, source: str | os.PathLike = SUMS_FILE) -> tuple[dict[str, str], list[dict]]:
    """``(relative path -> sha256, refused)`` from ``sha256sum`` output.

    Malformed lines and unsafe names (see the module docstring) are left out and
    listed in ``refused`` as ``{"line", "path", "reason"}``, one by one; a list
    with no usable name is an error.
    """
    entries: dict[str, str] = {}
    lines: dict[str, int] = {}
    refused: list[dict] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip("\r\n"))
        reason = _unsafe(m.group(2)) if m else "is not '<sha256>  <path>'"
        if reason:
            refused.append({"line": n, "path": m.group(2) if m else line[:80], "reason": reason})
        else:
            entries[m.group(2)], lines[m.group(2)] = m.group(1).lower(), n
    both = {f for rel in entries for f in _folders(rel)} & entries.keys()
    for rel in [rel for rel in entries if rel in both or any(f in both for f in _folders(rel))]:
        del entries[rel]
        refused.append({"line": lines[rel], "path": rel, "reason": "is both a file and a folder in the list"})
    if not entries:
        raise ECGError(source, f"lists no usable file ({len(refused)} line(s) refused)")
    refused.sort(key=lambda r: r["line"])
    return entries, refused


def _linked(base: Path, path: Path) -> Path | None:
    """The first symbolic link among ``path``'s folders below ``base`` (``path`` itself excluded), if any."""
    for parent in reversed(path.relative_to(base).parents[:-1]):
        if (base / parent).is_symlink():
            return base / parent
    return None


def _open_partial(part: Path, append: bool):
    """The partial file for writing, never through a symbolic link (O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    return open(os.open(part, flags, 0o666), "wb")


def _fetch(url: str, part: Path, timeout: float, max_bytes: int) -> str | None:
    """One request for ``url`` into ``part``, continuing an existing partial file.

    Returns None when the transfer ended complete, else why not (worth a retry);
    raises ``ECGError`` for what no retry mends (HTTP 404, a file over ``max_bytes``).
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the partial file may already be whole
            return None
        if exc.code in _RETRY_HTTP:
            return f"HTTP {exc.code} {exc.reason}"
        raise ECGError(url, f"HTTP {exc.code} {exc.reason}") from exc
    with response:
        start = 0  # a plain 200 (server ignored Range) restarts the file
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range") or ""
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                return f"asked to resume at byte {offset}, the server sent range {content_range!r}"
            start = offset
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and start + expected > max_bytes:
            raise ECGError(url, f"is {start + expected} bytes, over the limit of {max_bytes}")
        received = 0
        with _open_partial(part, append=start > 0) as fh:
            while block := response.read(_CHUNK):
                received += len(block)
                if start + received > max_bytes:
                    raise ECGError(url, f"sent more than the limit of {max_bytes} bytes")
                fh.write(block)
    return None if expected is None or received >= expected else "connection closed before the end of the file"


def download_file(url: str, target: str | os.PathLike, sha256: str | None, timeout: float = 60.0, retries: int = 5,
                  max_bytes: int = MAX_FILE_BYTES, backoff: float = 1.0, resume: bool = True) -> None:
    """Download one file to ``target`` via ``<target's folder>/.ecglens-partial/<name>``, resuming
    interruptions (a partial file left by an earlier run too, unless ``resume`` is False), verifying
    ``sha256`` (None skips verification).

    Up to ``retries`` failed transfers in all (waiting ``backoff`` seconds, doubling,
    before each retry); a checksum mismatch deletes the file and downloads it once
    more. Running out of retries, a second mismatch, an HTTP error or a body over
    ``max_bytes`` raise ``ECGError`` naming the file, and the partial file is removed.
    A symbolic link at ``target`` is replaced, never written through.
    """
    target = Path(target)
    part = target.parent / PARTIAL_DIR / target.name
    if part.parent.is_symlink():
        raise ECGError(target, f"{part.parent} is a symbolic link; refusing to write through it")
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.is_symlink() or not resume:
        part.unlink(missing_ok=True)
    try:
        for _ in range(2):
            failures = 0
            while (problem := _attempt(url, part, timeout, max_bytes)) is not None:
                failures += 1
                if failures > retries:
                    raise ECGError(target, f"download from {url} failed {failures} times; last: {problem}")
                time.sleep(backoff * 2 ** (failures - 1))
            actual = sha256_file(part)
            if sha256 is None or actual == sha256:
                os.replace(part, target)
                return
            part.unlink()
        raise ECGError(target, f"sha256 mismatch after a retry: expected {sha256}, got {actual} (from {url})")
    except ECGError:
        part.unlink(missing_ok=True)  # nothing worth resuming; a KeyboardInterrupt keeps it for the next run
        raise
    finally:
        try:
            part.parent.rmdir()
        except OSError:  # other partial downloads are still there
            pass


def _attempt(url: str, part: Path, timeout: float, max_bytes: int) -> str | None:
    """:func:`_fetch`, with a network error as one more reason to retry."""
    try:
        return _fetch(url, part, timeout, max_bytes)
    except _NETWORK_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"


def _select(entries: dict[str, str], files, source: Path) -> list[str]:
    if files is None:
        return list(entries)
    if callable(files):
        return [rel for rel in entries if files(rel)]
    wanted = list(files)
    unknown = [rel for rel in wanted if rel not in entries]
    if unknown:
        raise ECGError(source, f"does not list {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return wanted


def download_ptbxl(
    dest: str | os.PathLike,
    base_url: str = PTBXL_URL,
    files: Iterable[str] | Callable[[str], bool] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 5,
    max_bytes: int = MAX_FILE_BYTES,
    backoff: float = 1.0,
) -> dict:
    """Download PTB-XL (or any PhysioNet-style directory) into ``dest``, verified file by file.

    ``SHA256SUMS.txt`` comes first and lists what to fetch; ``files`` narrows it
    (a list of relative paths, or a predicate on them). Files already present
    with the right checksum are skipped. A file that fails is reported and the
    rest continue; ``retries``, ``max_bytes`` and ``backoff`` apply per file (see
    :func:`download_file`). Returns ``{"downloaded", "skipped_existing", "failed":
    [{"path", "reason"}], "refused": [{"line", "path", "reason"}], "total", "dest"}``;
    the caller decides what a failure means.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/") + "/"
    sums_path = dest / SUMS_FILE
    # never resume the list: it cannot be verified and may have changed since
    download_file(base + SUMS_FILE, sums_path, None, timeout=timeout, retries=retries, max_bytes=MAX_SUMS_BYTES,
                  backoff=backoff, resume=False)
    entries, refused = parse_sha256sums(sums_path.read_text(errors="replace"), sums_path)
    selected = _select(entries, files, sums_path)
    report = {"dest": str(dest), "total": len(selected), "downloaded": 0, "skipped_existing": 0, "failed": [],
              "refused": refused}
    bar = tqdm(selected, desc="downloading", unit="file", disable=not progress)
    for rel in bar:
        target = dest / rel
        try:
            link = _linked(dest, target)
            if link is not None:
                raise ECGError(target, f"{link} is a symbolic link inside the destination; refusing to follow it")
            if target.is_symlink():
                target.unlink()
            elif target.is_file():
                if sha256_file(target) == entries[rel]:
                    report["skipped_existing"] += 1
                    continue
                target.unlink()  # stale or damaged copy: fetch it again
            target.parent.mkdir(parents=True, exist_ok=True)
            download_file(base + urllib.parse.quote(rel), target, entries[rel], timeout=timeout, retries=retries,
                          max_bytes=max_bytes, backoff=backoff)
            report["downloaded"] += 1
        except (ECGError, OSError) as exc:  # OSError: e.g. a folder where a file should go
            report["failed"].append({"path": rel, "reason": str(exc)})
        bar.set_postfix(failed=len(report["failed"]), refresh=False)
    return report


def verify_dir(directory: str | os.PathLike, progress: bool = False) -> dict:
    """Check every file listed in ``directory/SHA256SUMS.txt``.

    Returns ``{"checked", "ok", "missing": [paths], "mismatched": [paths], "refused":
    [{"line", "path", "reason"}], "passed"}``; refused names fail verification too.
    """
    directory = Path(directory)
    sums_path = directory / SUMS_FILE
    if not sums_path.is_file():
        raise ECGError(sums_path, "missing: nothing to verify against")
    entries, refused = parse_sha256sums(sums_path.read_text(errors="replace"), sums_path)
    missing, mismatched, ok = [], [], 0
    for rel, digest in tqdm(entries.items(), desc="verifying", unit="file", disable=not progress):
        path = directory / rel
        if not path.is_file():
            missing.append(rel)
        elif sha256_file(path) != digest:
            mismatched.append(rel)
        else:
            ok += 1
    return {"directory": str(directory), "checked": len(entries), "ok": ok, "missing": missing,
            "mismatched": mismatched, "refused": refused, "passed": not missing and not mismatched and not refused}
