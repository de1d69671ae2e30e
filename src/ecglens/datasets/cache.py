"""A memory-mapped store of decoded, preprocessed signals, built once per key, checked on every open.

Decoding thousands of WFDB files and filtering them every epoch is the slow
part of training; this cache does it once and then serves a read-only
``np.memmap``. One directory per key under the cache root::

    <root>/<key>/signals.npy    float32 (N, leads, T), written with open_memmap
    <root>/<key>/index.json     ids, key parts, shape, chunk checksums, skipped records, complete flag
    <root>/<key>/progress.json  only while building: rows done/filled, chunk checksums, skipped

The key is a SHA-256 of the cache format, the caller's key parts (pipeline
fingerprint, source rate, dataset identity, ...), the sorted record ids and,
through ``sources``, the size and modification time of every file a record is
read from: any change, one record file included, gives a new directory, so a
stale cache is never read. ``signals.npy`` is filled in place under a lock and
published by ``index.json``, written atomically (``ecglens.atomic``) only after
every row is on disk, so a half-built cache is never taken for a complete one; a
killed build resumes from ``progress.json`` (also written atomically).
The store knows nothing about PTB-XL: records come from a ``load_fn(id)``.

Damage is detected, never served. Each chunk of rows has a CRC-32 over its
record ids and its bytes, recorded as the chunk is written; every open re-reads
the file and checks them all. That is eager, not lazy per chunk: callers index
the memory map directly (a lazy check would need a wrapper on every access and
would report damage mid-training), and CRC-32 runs at several GB/s, so a cache of
a few hundred MB is checked in a fraction of a second (plain reads, which leave
the process's resident memory alone and warm the page cache the memory map then
uses). Binding the ids into each checksum means rows shifted against their ids
fail too. The index must also agree with the ids asked for (its rows plus its
skipped records are exactly those, sorted, once each) and with the file's shape.
Any damage raises ``ECGError`` naming the file and the directory to delete to rebuild.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..atomic import write_json_atomic
from ..errors import ECGError

SIGNALS = "signals.npy"
INDEX = "index.json"
PROGRESS = "progress.json"
LOCK = ".lock"
FORMAT = 2  # 2: chunk checksums and record-file stamps; older caches are never opened
_READ_BYTES = 8 << 20


def default_cache_dir() -> Path:
    """``$ECGLENS_CACHE`` if set, else ``~/.cache/ecglens``."""
    env = os.environ.get("ECGLENS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ecglens"


def cache_key(key_parts: dict, ids: Sequence[Hashable]) -> str:
    """SHA-256 over the cache format and the canonical JSON of the key parts and the sorted ids."""
    blob = json.dumps({"format": FORMAT, "parts": key_parts, "ids": sorted(ids)}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def sources_digest(ids: Iterable[Hashable], sources: Callable[[Any], Iterable[str | os.PathLike]]) -> str:
    """SHA-256 over the path, size and modification time of every file ``sources(id)`` names, for each id."""
    h = hashlib.sha256()
    for rid in ids:
        for path in sources(rid):
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "absent"
            h.update(f"{rid}\0{os.fspath(path)}\0{stamp}\n".encode())
    return h.hexdigest()


def _chunk_crc(ids: list, blocks: Iterable) -> int:
    """CRC-32 of a chunk: its record ids (as JSON) followed by its rows' bytes."""
    crc = zlib.crc32(json.dumps(ids, default=str).encode())
    for block in blocks:
        crc = zlib.crc32(block, crc)
    return crc


def _file_blocks(fh, offset: int, size: int, buffer: bytearray) -> Iterator[memoryview]:
    """``size`` bytes of ``fh`` from ``offset`` in pieces of at most ``len(buffer)`` (fewer at end of file)."""
    fh.seek(offset)
    view = memoryview(buffer)
    while size > 0:
        n = fh.readinto(view[:min(size, len(buffer))])
        if not n:
            return
        yield view[:n]
        size -= n


def _damaged(path: Path, directory: Path, problem: str) -> ECGError:
    return ECGError(path, f"{problem}; the cache is damaged: delete {directory} to rebuild it")


def _read_index(directory: Path, ids: list) -> tuple[list, list, list[int], list[tuple[int, int, int]]] | None:
    """``(row ids, skipped, shape, chunks)`` of a complete index that agrees with ``ids``; None when there is
    no complete index yet."""
    path = directory / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
        if not index.get("complete"):
            return None
        rows = list(index["ids"])
        skipped = [(s[0], str(s[1])) for s in index["skipped"]]
        shape = [int(v) for v in index["shape"]]
        chunks = [(int(a), int(b), int(crc)) for a, b, crc in index["chunks"]]
        fmt = index["format"]
        ordered = all(a < b for a, b in zip(rows, rows[1:]))
        held = sorted([rid for rid, _ in skipped] + rows)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, directory, f"unreadable or malformed index ({type(exc).__name__}: {exc})") from exc
    asked = json.loads(json.dumps(ids, default=str))
    ends = [b for _, b, _ in chunks]
    if fmt != FORMAT:
        raise _damaged(path, directory, f"index format {fmt!r}, expected {FORMAT}")
    if not ordered:
        raise _damaged(path, directory, "the index's ids are not sorted and unique, so rows and ids disagree")
    if held != asked:
        raise _damaged(path, directory, f"the index holds {len(rows)} rows and {len(skipped)} skipped records, "
                                        f"not exactly the {len(asked)} ids of this key")
    if len(shape) != 3 or shape[0] != len(rows):
        raise _damaged(path, directory, f"shape {shape} disagrees with its {len(rows)} ids")
    if [a for a, _, _ in chunks] != [0, *ends[:-1]] or ends[-1:] != [len(rows)]:
        raise _damaged(path, directory, f"its chunk checksums do not cover rows 0-{len(rows) - 1}")
    return rows, skipped, shape, chunks


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

    ``chunk_size`` rows are written between progress flushes, each such chunk
    with its checksum: a build killed by SIGKILL redoes at most that many
    records; one stopped by an exception (KeyboardInterrupt included) saves its
    progress first and redoes none.
    """

    def __init__(self, root: str | os.PathLike | None = None, chunk_size: int = 256):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.chunk_size = int(chunk_size)

    def path_for(self, key_parts: dict, ids: Sequence[Hashable],
                 sources: Callable[[Any], Iterable[str | os.PathLike]] | None = None) -> Path:
        """The directory of a key (see :meth:`get_or_build` for ``sources``)."""
        return self.root / cache_key(self._parts(key_parts, ids, sources), ids)

    @staticmethod
    def _parts(key_parts: dict, ids, sources) -> dict:
        return key_parts if sources is None else {**key_parts, "sources": sources_digest(sorted(ids), sources)}

    def get_or_build(
        self,
        key_parts: dict,
        ids: Sequence[Hashable],
        load_fn: Callable[[Any], np.ndarray],
        progress: bool = True,
        describe: Callable[[Any], str] | None = None,
        sources: Callable[[Any], Iterable[str | os.PathLike]] | None = None,
    ) -> tuple[np.memmap, list, list[tuple[Any, str]]]:
        """The cached signals for ``ids``, building (or finishing) the store if needed.

        ``load_fn(id)`` returns one (leads, T) array; an ``ECGError`` from it skips
        that record (returned in ``skipped`` as ``(id, reason)``), any other
        exception stops the build resumably. Every record must come out with the
        same shape. Returns the read-only memmap (rows in sorted-id order), the
        ids of its rows, and the skipped records. ``describe(id)`` names a record
        in error messages (e.g. its file path); ``sources(id)`` lists the files a
        record is read from, whose sizes and modification times join the key.
        A damaged cache raises ``ECGError`` (see the module docstring).
        """
        ids = sorted(i.item() if isinstance(i, np.generic) else i for i in ids)
        if not ids:
            raise ECGError(None, "nothing to cache: the list of record ids is empty")
        dupes = [i for i, n in Counter(ids).items() if n > 1]
        if dupes:
            raise ECGError(None, f"duplicate record ids: {dupes[:10]}")
        parts = self._parts(key_parts, ids, sources)
        directory = self.root / cache_key(parts, ids)
        opened = self._open(directory, ids)
        if opened is not None:
            return opened
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            opened = self._open(directory, ids)  # another process may have finished it meanwhile
            if opened is not None:
                return opened
            self._build(directory, parts, ids, load_fn, progress, describe or (lambda i: f"record {i}"))
        opened = self._open(directory, ids)
        if opened is None:
            raise ECGError(directory, "cache build finished but its index is not complete")
        return opened

    @staticmethod
    def _open(directory: Path, ids: list):
        """The checked ``(signals, ids, skipped)`` of a complete cache; None when it is not (yet) complete."""
        index = _read_index(directory, ids)
        if index is None:
            return None
        rows, skipped, shape, chunks = index
        path = directory / SIGNALS
        try:
            signals = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise _damaged(path, directory, f"unreadable ({exc})") from exc
        if signals.dtype != np.float32 or list(signals.shape) != [len(ids), *shape[1:]]:
            raise _damaged(path, directory, f"holds {signals.dtype} {signals.shape}; the index expects float32 "
                                            f"{(len(ids), *shape[1:])}")
        row_bytes = int(np.prod(shape[1:])) * 4
        buffer = bytearray(_READ_BYTES)
        with open(path, "rb", buffering=0) as fh:
            for a, b, crc in chunks:
                blocks = _file_blocks(fh, signals.offset + a * row_bytes, (b - a) * row_bytes, buffer)
                if _chunk_crc(rows[a:b], blocks) != crc:
                    raise _damaged(path, directory, f"rows {a}-{b - 1} (ids {rows[a]} to {rows[b - 1]}) do not "
                                                    "match their checksum: overwritten or shifted signals")
        return signals[:len(rows)], rows, skipped

    def _build(self, directory, key_parts, ids, load_fn, progress, describe):
        state, signals = self._resume(directory, len(ids))
        bar = tqdm(total=len(ids), initial=state["done"], desc="caching signals", unit="rec", disable=not progress)

        def save():
            """Checksum the rows filled since the last save, flush them, then record the progress."""
            start = state["chunks"][-1][1] if state["chunks"] else 0
            if state["filled"] > start:
                rows = slice(start, state["filled"])
                state["chunks"].append([start, state["filled"], _chunk_crc(state["ids"][rows], [signals[rows]])])
            if signals is not None:
                signals.flush()
            write_json_atomic(directory / PROGRESS, state, default=str)

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
            "format": FORMAT,
            "ids": state["ids"],
            "shape": [state["filled"], *state["shape"][1:]],
            "dtype": "float32",
            "checksum": "crc32 of each chunk's ids (JSON) then its rows",
            "chunks": state["chunks"],
            "key_parts": key_parts,
            "skipped": state["skipped"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "complete": True,
        }
        write_json_atomic(directory / INDEX, index, default=str)
        (directory / PROGRESS).unlink(missing_ok=True)

    @staticmethod
    def _resume(directory: Path, n: int) -> tuple[dict, np.memmap | None]:
        """The saved build state and its open signals file, or a fresh start when either is unusable."""
        fresh = {"n": n, "done": 0, "filled": 0, "shape": None, "ids": [], "skipped": [], "chunks": []}
        path = directory / PROGRESS
        if not (path.is_file() and (directory / SIGNALS).is_file()):
            return fresh, None
        try:
            state = json.loads(path.read_text())
            if not (isinstance(state, dict) and state.keys() == fresh.keys() and state["n"] == n and state["shape"]):
                return fresh, None
            signals = np.lib.format.open_memmap(directory / SIGNALS, mode="r+")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError):
            return fresh, None  # an unusable progress or signals file only costs a rebuild
        if list(signals.shape) != state["shape"] or signals.dtype != np.float32:
            return fresh, None
        return state, signals


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
