"""Download PTB-XL from PhysioNet and verify a copy against its ``SHA256SUMS.txt``.

Only the standard library's ``urllib`` is used. Downloads are resumable: bytes
go to ``<file>.part`` and an interrupted transfer continues with an HTTP
``Range`` request (a server that ignores it sends the whole file, which then
replaces the partial one). Every file is checked against its SHA-256 before it
takes its final name; a mismatch deletes it and fetches it once more.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from tqdm.auto import tqdm

from ..errors import ECGError

PTBXL_URL = "https://physionet.org/files/ptb-xl/1.0.3/"
SUMS_FILE = "SHA256SUMS.txt"
_CHUNK = 1 << 16
_NETWORK_ERRORS = (http.client.HTTPException, OSError)  # OSError covers URLError, timeouts, resets


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_sha256sums(text: str, source: str | os.PathLike = SUMS_FILE) -> dict[str, str]:
    """``relative path -> sha256`` from ``sha256sum`` output; unsafe paths are an error."""
    entries: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip("\r\n"))
        if not m:
            raise ECGError(source, f"line {n} is not '<sha256>  <path>': {line[:80]!r}")
        rel = m.group(2)
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or ".." in parts or "\\" in rel or not parts:
            raise ECGError(source, f"line {n}: refusing unsafe path {rel!r}")
        entries[rel] = m.group(1).lower()
    if not entries:
        raise ECGError(source, "lists no files")
    return entries


def _fetch(url: str, part: Path, timeout: float) -> bool:
    """Fetch ``url`` into ``part``, continuing an existing partial file; True when the transfer ended complete."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the partial file may already be whole
            return True
        raise ECGError(url, f"HTTP {exc.code} {exc.reason}") from exc
    with response:
        mode = "wb"  # a plain 200 (server ignored Range) restarts the file
        if offset and response.status == 206:
            if not (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
                part.unlink()  # a range we did not ask for: start over
                return False
            mode = "ab"
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with open(part, mode) as fh:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                fh.write(block)
                received += len(block)
    return expected is None or received >= expected


def download_file(url: str, target: str | os.PathLike, sha256: str | None, timeout: float = 60.0, max_resumes: int = 5) -> None:
    """Download one file to ``target`` via ``target.part``, resuming interruptions, verifying ``sha256``.

    A checksum mismatch deletes the file and downloads it once more; a second
    mismatch, an HTTP error or more than ``max_resumes`` broken transfers in a
    row raise ``ECGError`` naming the file. ``sha256=None`` skips verification.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for attempt in range(2):
        failures = 0
        while True:
            before = part.stat().st_size if part.is_file() else 0
            try:
                if _fetch(url, part, timeout):
                    break
                problem = "connection closed before the end of the file"
            except ECGError:
                raise
            except _NETWORK_ERRORS as exc:
                problem = f"{type(exc).__name__}: {exc}"
            after = part.stat().st_size if part.is_file() else 0
            failures = 0 if after > before else failures + 1
            if failures > max_resumes:
                raise ECGError(target, f"download from {url} keeps failing ({problem})")
        actual = sha256_file(part)
        if sha256 is None or actual == sha256:
            os.replace(part, target)
            return
        part.unlink()
    raise ECGError(target, f"sha256 mismatch after a retry: expected {sha256}, got {actual} (from {url})")


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
) -> dict:
    """Download PTB-XL (or any PhysioNet-style directory) into ``dest``, verified file by file.

    ``SHA256SUMS.txt`` comes first and lists what to fetch; ``files`` narrows it
    (a list of relative paths, or a predicate on them). Files already present
    with the right checksum are skipped. A file that fails is reported and the
    rest continue. Returns ``{"downloaded", "skipped_existing", "failed": [{"path",
    "reason"}], "total", "dest"}``; the caller decides what a failure means.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/") + "/"
    sums_path = dest / SUMS_FILE
    sums_path.with_name(SUMS_FILE + ".part").unlink(missing_ok=True)
    download_file(base + SUMS_FILE, sums_path, None, timeout=timeout)
    entries = parse_sha256sums(sums_path.read_text(errors="replace"), sums_path)
    selected = _select(entries, files, sums_path)
    report = {"dest": str(dest), "total": len(selected), "downloaded": 0, "skipped_existing": 0, "failed": []}
    bar = tqdm(selected, desc="downloading", unit="file", disable=not progress)
    for rel in bar:
        target = dest / rel
        if target.is_file():
            if sha256_file(target) == entries[rel]:
                report["skipped_existing"] += 1
                continue
            target.unlink()  # stale or damaged copy: fetch it again
        try:
            download_file(base + urllib.parse.quote(rel), target, entries[rel], timeout=timeout)
            report["downloaded"] += 1
        except ECGError as exc:
            report["failed"].append({"path": rel, "reason": str(exc)})
        bar.set_postfix(failed=len(report["failed"]), refresh=False)
    return report


def verify_dir(directory: str | os.PathLike, progress: bool = False) -> dict:
    """Check every file listed in ``directory/SHA256SUMS.txt``.

    Returns ``{"checked", "ok", "missing": [paths], "mismatched": [paths], "passed"}``.
    """
    directory = Path(directory)
    sums_path = directory / SUMS_FILE
    if not sums_path.is_file():
        raise ECGError(sums_path, "missing: nothing to verify against")
    entries = parse_sha256sums(sums_path.read_text(errors="replace"), sums_path)
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
            "mismatched": mismatched, "passed": not missing and not mismatched}
