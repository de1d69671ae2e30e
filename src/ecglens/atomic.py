"""Atomic outputs: every file is written under a temporary name beside its target and renamed when complete.

A reader, or a later run, sees either the previous version or the complete new
one, never a partial file: ``os.replace`` within one directory is atomic on
POSIX, and the data is fsynced before the rename so a power loss cannot leave
the new name pointing at missing blocks. A block that raises removes its
temporary; one killed outright (SIGKILL) leaves a hidden
``.<name>.tmp-<pid>-<token>`` that the next write of the same target removes
once that process is gone.

Checkpoints are directories (weights + config that must match each other), so
:func:`atomic_dir` builds the whole directory under a temporary name and swaps
it in: writing each file atomically with the config last would still leave new
weights beside an old config if the save were killed between the two files.
The swap takes two renames (old out, new in); a kill between them leaves no
directory at the target and the previous one as ``.<name>.old-<pid>-<token>``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

_TMP = ".tmp-"
_OLD = ".old-"


def _hidden(path: Path, tag: str) -> str:
    # a target name near the 255-byte limit must still leave room for the suffix
    return "." + path.name.encode()[:200].decode(errors="ignore") + tag


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f"{_hidden(path, tag)}{os.getpid()}-{secrets.token_hex(4)}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _sweep(path: Path) -> None:
    """Remove temporaries of ``path`` left by processes that no longer run (a SIGKILL skips cleanup)."""
    prefix = _hidden(path, _TMP)
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and not _running(int(pid)):
            _remove(path.parent / name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """Open a temporary beside ``path`` for writing (``mode`` "w" or "wb"); it becomes ``path`` when the block
    completes and is removed if the block raises. ``newline=""`` suits the csv module."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    _sweep(path)
    tmp = _sibling(path, _TMP)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 less the umask, like open()
    try:
        text = {} if mode == "wb" else {"encoding": encoding, "newline": newline}
        with open(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, **dump_kwargs) -> Path:
    """Write ``obj`` as JSON (plus a final newline) atomically; ``dump_kwargs`` go to ``json.dumps``.
    Serialising first means an object JSON cannot encode fails before anything touches the disk."""
    return write_text_atomic(path, json.dumps(obj, **dump_kwargs) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended) atomically."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; when the block completes it replaces ``path`` as a
    whole (every file in it fsynced first), and if the block raises it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    tmp = _sibling(path, _TMP)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file() and not f.is_symlink():
                _fsync(f)
        _fsync(tmp)
        old = None
        if path.exists() or path.is_symlink():
            old = _sibling(path, _OLD)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(path.parent)
    if old is not None:
        _remove(old)
