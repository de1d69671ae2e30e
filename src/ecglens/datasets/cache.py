"""A memory-mapped store of decoded, preprocessed signals, built once per key.

Decoding thousands of WFDB files and filtering them every epoch is the slow
part of training; this cache does it once and then serves a read-only
``np.memmap``. One directory per key under the cache root::

    <root>/<key>/signals.npy    float32 (N, leads, T), written with open_memmap
    <root>/<key>/index.json     ids, key parts, shape, created, complete flag
    <root>/<key>/progress.json  only while building: rows done/filled, skipped

The key is a SHA-256 of the caller's key parts (pipeline fingerprint, source
rate, dataset identity, ...) and the sorted record ids, so any change gives a
new directory and a stale cache is never read. ``index.json`` is written (by
atomic rename) only after every row is on disk, so a half-built cache is never
taken for a complete one; a killed build resumes from ``progress.json``. The
store knows nothing about PTB-XL: records come from a ``load_fn(id)``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import ECGError

SIGNALS = "signals.npy"
INDEX = "index.json"
PROGRESS = "progress.json"
LOCK = ".lock"


def default_cache_dir() -> Path:
    """``$ECGLENS_CACHE`` if set, else ``~/.cache/ecglens``."""
    env = os.environ.get("ECGLENS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ecglens"


def cache_key(key_parts: dict, ids: Sequence[Hashable]) -> str:
    """SHA-256 over the canonical JSON of the key parts and the sorted ids."""
    blob = json.dumps({"parts": key_parts, "ids": sorted(ids)}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(directory: Path):
    """An exclusive lock on the key directory, so parallel ranks build a key only once."""
    with open(directory / LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class SignalCache:
    """Memory-mapped signal store under ``root`` (default: :func:`default_cache_dir`).

    ``chunk_size`` rows are written between progress flushes: a build killed by
    SIGKILL redoes at most that many records; one stopped by an exception
    (KeyboardInterrupt included) saves its progress first and redoes none.
    """

    def __init__(self, root: str | os.PathLike | None = None, chunk_size: int = 256):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.chunk_size = int(chunk_size)

    def path_for(self, key_parts: dict, ids: Sequence[Hashable]) -> Path:
        return self.root / cache_key(key_parts, ids)

    def get_or_build(
        self,
        key_parts: dict,
        ids: Sequence[Hashable],
        load_fn: Callable[[Any], np.ndarray],
        progress: bool = True,
        describe: Callable[[Any], str] | None = None,
    ) -> tuple[np.memmap, list, list[tuple[Any, str]]]:
        """The cached signals for ``ids``, building (or finishing) the store if needed.

        ``load_fn(id)`` returns one (leads, T) array; an ``ECGError`` from it skips
        that record (returned in ``skipped`` as ``(id, reason)``), any other
        exception stops the build resumably. Every record must come out with the
        same shape. Returns the read-only memmap (rows in sorted-id order), the
        ids of its rows, and the skipped records. ``describe(id)`` names a record
        in error messages (e.g. its file path).
        """
        ids = sorted(i.item() if isinstance(i, np.generic) else i for i in ids)
        if not ids:
            raise ECGError(None, "nothing to cache: the list of record ids is empty")
        dupes = [i for i, n in Counter(ids).items() if n > 1]
        if dupes:
            raise ECGError(None, f"duplicate record ids: {dupes[:10]}")
        directory = self.path_for(key_parts, ids)
        opened = self._open(directory)
        if opened is not None:
            return opened
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            opened = self._open(directory)  # another process may have finished it meanwhile
            if opened is not None:
                return opened
            self._build(directory, key_parts, ids, load_fn, progress, describe or (lambda i: f"record {i}"))
        opened = self._open(directory)
        if opened is None:
            raise ECGError(directory, "cache build finished but its index is not complete")
        return opened

    @staticmethod
    def _open(directory: Path):
        index_path = directory / INDEX
        if not index_path.is_file():
            return None
        try:
            index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ECGError(index_path, f"unreadable cache index ({exc}); delete the directory to rebuild") from exc
        if not index.get("complete"):
            return None
        signals = np.load(directory / SIGNALS, mmap_mode="r")
        n = int(index["n_rows"])
        if list(signals.shape[1:]) != list(index["shape"][1:]) or signals.shape[0] < n:
            raise ECGError(directory / SIGNALS, f"shape {signals.shape} does not match index {index['shape']}; delete the directory to rebuild")
        return signals[:n], index["ids"], [tuple(s) for s in index["skipped"]]

    def _build(self, directory, key_parts, ids, load_fn, progress, describe):
        state = self._resume_state(directory, len(ids))
        signals = None
        if state["shape"] is not None:
            signals = np.lib.format.open_memmap(directory / SIGNALS, mode="r+")
        bar = tqdm(total=len(ids), initial=state["done"], desc="caching signals", unit="rec", disable=not progress)

        def save():
            if signals is not None:
                signals.flush()
            _write_json_atomic(directory / PROGRESS, state)

        try:
            while state["done"] < len(ids):
                stop = min(state["done"] + self.chunk_size, len(ids))
                for i in range(state["done"], stop):
                    rid = ids[i]
                    try:
                        x = np.asarray(load_fn(rid), dtype=np.float32)
                    except ECGError as exc:
                        state["skipped"].append([rid, str(exc)])
                        state["done"] = i + 1
                        bar.update(1)
                        continue
                    if x.ndim != 2:
                        raise ECGError(describe(rid), f"loader returned shape {x.shape}; expected (leads, samples)")
                    if signals is None:
                        state["shape"] = [len(ids), *x.shape]
                        signals = np.lib.format.open_memmap(directory / SIGNALS, mode="w+", dtype=np.float32, shape=tuple(state["shape"]))
                    elif list(x.shape) != state["shape"][1:]:
                        raise ECGError(
                            describe(rid),
                            f"shape {x.shape} after preprocessing differs from {tuple(state['shape'][1:])} of the "
                            "records before it; every cached record needs the same length (add FixLength to the pipeline)",
                        )
                    signals[state["filled"]] = x
                    state["filled"] += 1
                    state["ids"].append(rid)
                    state["done"] = i + 1
                    bar.update(1)
                save()
        except BaseException:
            save()
            raise
        finally:
            bar.close()
        if signals is None:
            raise ECGError(None, f"no record could be loaded; all {len(ids)} skipped, first: {state['skipped'][0][1]}")
        index = {
            "ids": state["ids"],
            "n_rows": state["filled"],
            "shape": [state["filled"], *state["shape"][1:]],
            "dtype": "float32",
            "key_parts": key_parts,
            "skipped": state["skipped"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "complete": True,
        }
        _write_json_atomic(directory / INDEX, index)
        (directory / PROGRESS).unlink(missing_ok=True)

    @staticmethod
    def _resume_state(directory: Path, n: int) -> dict:
        fresh = {"n": n, "done": 0, "filled": 0, "shape": None, "ids": [], "skipped": []}
        path = directory / PROGRESS
        if not (path.is_file() and (directory / SIGNALS).is_file()):
            return fresh
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return fresh  # an unreadable progress file only costs a rebuild
        return state if state.get("n") == n else fresh


def cache_size_bytes(directory: str | os.PathLike) -> int:
    """Bytes on disk under a cache directory."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def iter_batches(signals: np.ndarray, batch_size: int, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
    """Contiguous in-memory float32 batches from a (memory-mapped) array, with bounded RAM.

    Without ``indices`` the rows come in order; with them (e.g. a random
    permutation, as a training loader uses) batch ``b`` holds rows
    ``indices[b*batch_size:(b+1)*batch_size]`` in that order. Each batch's rows
    are read in sorted order (a forward sweep through the map) straight into
    their places in one new array; a gather-then-reorder costs a second batch
    allocation and measured several times slower. Only one batch is held at a time.
    """
    if batch_size < 1:
        raise ECGError(None, f"batch_size must be >= 1, got {batch_size}")
    n = len(signals)
    if indices is None:
        for start in range(0, n, batch_size):
            yield np.array(signals[start:start + batch_size], dtype=np.float32, copy=True)
        return
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < -n or indices.max() >= n):
        raise ECGError(None, f"batch indices out of range for {n} rows")
    rows = np.asarray(signals)  # plain ndarray view: no memmap subclass overhead per row
    for start in range(0, len(indices), batch_size):
        chunk = (indices[start:start + batch_size] % n).tolist()
        batch = np.empty((len(chunk),) + rows.shape[1:], dtype=np.float32)
        for j in sorted(range(len(chunk)), key=chunk.__getitem__):
            batch[j] = rows[chunk[j]]
        yield batch
