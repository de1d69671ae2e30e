"""Batch prediction over many files: deterministic parts, one Parquet file per part, a manifest, resumable.

The inputs (files and directories, expanded with ``io.find_records``) are sorted by path and cut into
parts of ``part_size``; part ``i`` always holds the same files, so a re-run or another shard agrees on
them. Each part is read, predicted (``Model.predict(..., on_error="skip")``) and written atomically as
``part-NNNNNN.parquet``: one row per input file with a probability column per statement, the called
statements, the quality verdict and a ``problem`` column (unreadable, not judged or not judgeable files
keep their row; nothing is skipped silently). The part's manifest entry (inputs, hash of its input
list, rows, failures) travels in the Parquet footer, so the parts are the truth: a part is finished when
its file exists with the planned hash, and ``manifest.json`` is an index rebuilt from them (at the start,
while parts finish, and at the end). A killed run resumes by doing only the missing parts; ``shard=(K, N)``
takes every N-th part (K in 1..N) for job arrays writing to one directory.

Engines: ``local`` (this process), ``dask`` (``dask.distributed``: a given scheduler or a local cluster on
127.0.0.1; each worker process loads the model once) and ``ray`` (Ray Data ``map_batches`` over an actor
pool, one model per actor; needs the ``ray`` extra).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .atomic import atomic_write, write_json_atomic
from .errors import ECGError

ENGINES = ("local", "dask", "ray")
MANIFEST = "manifest.json"
FOOTER_KEY = b"ecglens.part"
MANIFEST_EVERY_S = 5.0  # rewrite the manifest at most this often while parts finish


@dataclass(frozen=True)
class Part:
    """One deterministic slice of the sorted input list."""

    index: int
    paths: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}"

    @property
    def file(self) -> str:
        return f"{self.name}.parquet"

    @property
    def input_hash(self) -> str:
        return hashlib.sha256("\n".join(self.paths).encode()).hexdigest()

    def pending_entry(self) -> dict:
        return {"part": self.name, "file": self.file, "inputs": len(self.paths), "input_hash": self.input_hash,
                "status": "pending"}


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Every record under ``inputs`` (files, bare WFDB names, directories), sorted and without repeats."""
    from .io import find_records

    found: set[str] = set()
    for name in inputs:
        paths = find_records(name)
        if not paths:
            raise ECGError(name, "no ECG records found in this directory")
        found.update(str(p) for p in paths)
    return sorted(found)


def plan_parts(paths: Iterable[str], part_size: int) -> list[Part]:
    """The sorted paths cut into parts of ``part_size`` (the last may be shorter)."""
    if part_size < 1:
        raise ECGError(None, f"part size must be at least 1, got {part_size}")
    paths = sorted({str(p) for p in paths})
    return [Part(i, tuple(paths[start:start + part_size])) for i, start in enumerate(range(0, len(paths), part_size))]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ECGError(None, f"--shard must be K/N (e.g. 1/4), got {text!r}") from None
    if not 1 <= k <= n:
        raise ECGError(None, f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def shard_parts(parts: list[Part], shard: tuple[int, int] | None) -> list[Part]:
    """Shard K of N: every N-th part, starting with part K-1."""
    if shard is None:
        return list(parts)
    k, n = shard
    return [p for p in parts if p.index % n == k - 1]


def model_identity(model: str | os.PathLike) -> str:
    """The model as the manifest names it: an existing path made absolute, otherwise the shipped name."""
    return str(Path(model).resolve()) if Path(model).exists() else str(model)


def predict_part(model, part: Part, model_name: str):
    """``(table, entry)``: the part's rows as a pyarrow Table (entry in its footer) and its manifest entry."""
    import numpy as np
    import pyarrow as pa

    from .io import read_ecg

    problems: dict[int, str] = {}
    ecgs, rows = [], []
    for i, path in enumerate(part.paths):
        try:
            ecgs.append(read_ecg(path))
            rows.append(i)
        except Exception as exc:  # every failure is recorded in the part, whatever raised it
            problems[i] = exc.problem if isinstance(exc, ECGError) else f"{type(exc).__name__}: {exc}"
    prediction = model.predict(ecgs, on_error="skip")
    labels = list(prediction.labels)
    n = len(part.paths)
    probs = np.full((n, len(labels)), np.nan)
    probs[rows] = prediction.probabilities
    called: list[list[str]] = [[] for _ in range(n)]
    judgeable: list[bool | None] = [None] * n
    flags: list[list[str]] = [[] for _ in range(n)]
    calls = prediction.calls
    for j, i in enumerate(rows):
        called[i] = [s for s, c in zip(labels, calls[j]) if c]
        if prediction.quality is not None:
            judgeable[i] = bool(prediction.quality[j]["judgeable"])
            flags[i] = list(prediction.quality[j]["flags"])
            if not judgeable[i]:
                problems[i] = f"not judgeable: {', '.join(flags[i])}"
    for j, why in prediction.skipped:
        problems[rows[j]] = f"not judged: {why}"
    entry = {**part.pending_entry(), "status": "done", "model": model_name, "rows": n,
             "failures": [{"record": part.paths[i], "problem": problems[i]} for i in sorted(problems)]}
    columns = {"record": pa.array(part.paths, pa.string()),
               **{s: pa.array(probs[:, k], pa.float64()) for k, s in enumerate(labels)},
               "called": pa.array(called, pa.list_(pa.string())),
               "judgeable": pa.array(judgeable, pa.bool_()),
               "quality_flags": pa.array(flags, pa.list_(pa.string())),
               "problem": pa.array([problems.get(i) for i in range(n)], pa.string())}
    table = pa.table(columns).replace_schema_metadata({FOOTER_KEY: json.dumps(entry).encode()})
    return table, entry


def write_part(model, part: Part, outdir: Path, model_name: str) -> dict:
    """Predict one part and write it atomically; returns its manifest entry."""
    import pyarrow.parquet as pq

    table, entry = predict_part(model, part, model_name)
    with atomic_write(outdir / part.file, "wb") as fh:
        pq.write_table(table, fh)
    return entry


def read_entry(path: Path) -> dict | None:
    """The manifest entry stored in a part file's footer (None when the file is not a readable part)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[FOOTER_KEY])
    except (OSError, KeyError, ValueError):
        return None


def _finished(parts: list[Part], outdir: Path, model_name: str) -> dict[str, dict]:
    """Entries of the parts already written with the planned inputs; a part of another model is an error."""
    done = {}
    for part in parts:
        path = outdir / part.file
        entry = read_entry(path) if path.is_file() else None
        if entry is None or entry.get("input_hash") != part.input_hash:
            continue
        if entry.get("model") != model_name:
            raise ECGError(path, f"written by model {entry.get('model')!r}, not {model_name!r}; "
                                 "use another output directory")
        done[part.name] = entry
    return done


class _Manifest:
    """``manifest.json``: every planned part with its status, rewritten atomically (throttled while running)."""

    def __init__(self, outdir: Path, parts: list[Part], model_name: str, part_size: int):
        self.path, self.parts, self.model, self.part_size = outdir / MANIFEST, parts, model_name, part_size
        self.entries = {p.name: p.pending_entry() for p in parts}
        self.written = 0.0

    def update(self, entries: Iterable[dict], force: bool = False) -> None:
        for e in entries:
            self.entries[e["part"]] = e
        if force or time.monotonic() - self.written >= MANIFEST_EVERY_S:
            self.write()

    def write(self) -> None:
        parts = [self.entries[p.name] for p in self.parts]
        write_json_atomic(self.path, {
            "model": self.model, "part_size": self.part_size, "parts_total": len(parts),
            "inputs_total": sum(e["inputs"] for e in parts),
            "parts_done": sum(e["status"] == "done" for e in parts),
            "rows": sum(e.get("rows", 0) for e in parts),
            "failures": sum(len(e.get("failures", ())) for e in parts),
            "parts": parts}, indent=1)
        self.written = time.monotonic()


def _check_manifest(outdir: Path, model_name: str, part_size: int) -> None:
    """Refuse an output directory holding another model's or another part size's parts."""
    path = outdir / MANIFEST
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError as exc:
        raise ECGError(path, f"not a readable manifest: {exc}") from None
    for key, now in (("model", model_name), ("part_size", part_size)):
        if old.get(key) != now:
            raise ECGError(path, f"this output directory was written with {key} {old.get(key)!r}, not {now!r}; "
                                 "use another output directory")


@dataclass
class BatchResult:
    """What a run did: parts planned (all shards), taken by this shard, done before, done now; failures."""

    parts_total: int
    parts_in_shard: int
    parts_skipped: int
    parts_run: int
    rows: int
    failures: list[dict]
    manifest: Path


def run_batch(model: str | os.PathLike, inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike,
              engine: str = "local", workers: int = 1, part_size: int = 256, shard: tuple[int, int] | None = None,
              scheduler: str | None = None, progress: bool = True) -> BatchResult:
    """Predict every record under ``inputs`` with ``model`` into Parquet parts under ``outdir``; finished
    parts are skipped. A part that fails as a whole (not one bad file: those are rows with a ``problem``)
    is marked ``error`` in the manifest, the others still run, and an ``ECGError`` naming it is raised."""
    if engine not in ENGINES:
        raise ECGError(None, f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise ECGError(None, f"workers must be at least 1, got {workers}")
    outdir = Path(outdir)
    model_name = model_identity(model)
    _check_manifest(outdir, model_name, part_size)
    parts = plan_parts(expand_inputs(inputs), part_size)
    mine = shard_parts(parts, shard)
    outdir.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(outdir, parts, model_name, part_size)
    manifest.update(_finished(parts, outdir, model_name).values(), force=True)
    todo = [p for p in mine if manifest.entries[p.name]["status"] != "done"]
    runner = {"local": _run_local, "dask": _run_dask, "ray": _run_ray}[engine]
    from tqdm import tqdm

    errors = []
    with tqdm(total=len(todo), desc=f"predict-batch ({engine})", unit="part", file=sys.stderr,
              disable=not progress) as bar:
        try:
            for entry in runner(model_name, todo, outdir, workers, scheduler):
                manifest.update([entry])
                if entry["status"] == "error":
                    errors.append(entry)
                bar.update(1)
        finally:
            manifest.update(_finished(parts, outdir, model_name).values(), force=True)
    if errors:
        first = errors[0]
        raise ECGError(outdir / first["file"], f"{first['problem']} ({len(errors)} of {len(todo)} part(s) failed; "
                                               f"listed in {manifest.path}; re-run to retry them)")
    done = [manifest.entries[p.name] for p in mine]
    return BatchResult(len(parts), len(mine), len(mine) - len(todo), len(todo), sum(e["rows"] for e in done),
                       [f for e in done for f in e["failures"]], manifest.path)


def _error_entry(part: Part, exc: BaseException) -> dict:
    problem = exc.problem if isinstance(exc, ECGError) else f"{type(exc).__name__}: {exc}"
    return {**part.pending_entry(), "status": "error", "problem": f"{part.name}: {problem}"}


def _run_local(model_name: str, todo: list[Part], outdir: Path, workers: int, scheduler: str | None) -> Iterator[dict]:
    from .api import load_model

    model = load_model(model_name) if todo else None
    for part in todo:
        try:
            yield write_part(model, part, outdir, model_name)
        except Exception as exc:  # one part's failure is recorded; the others still run
            yield _error_entry(part, exc)


_model_lock = threading.Lock()


@lru_cache(maxsize=2)
def _cached_model(model_name: str):
    from .api import load_model

    return load_model(model_name)


def worker_model(model_name: str):
    """The model loaded once per worker process (cached by model path; threads share it)."""
    with _model_lock:
        return _cached_model(model_name)


def _dask_task(model_name: str, part: Part, outdir: str) -> dict:
    try:
        return write_part(worker_model(model_name), part, Path(outdir), model_name)
    except Exception as exc:  # returned, not raised: the driver records it and goes on
        return _error_entry(part, exc)


def _run_dask(model_name: str, todo: list[Part], outdir: Path, workers: int, scheduler: str | None) -> Iterator[dict]:
    from dask.distributed import Client, LocalCluster, as_completed

    if not todo:
        return
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  host="127.0.0.1", dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(_dask_task, model_name, part, str(outdir.resolve()), key=f"ecglens-{part.name}",
                                     pure=False) for part in todo]
            for future in as_completed(futures):
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()


class _RayPartPredictor:
    """A Ray Data actor: loads the model once, then predicts and writes whole parts."""

    def __init__(self, model_name: str, outdir: str):
        from .api import load_model

        self.model_name, self.outdir, self.model = model_name, Path(outdir), load_model(model_name)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        entries = []
        for index, paths in zip(batch["index"], batch["paths"]):
            part = Part(int(index), tuple(str(paths).split("\n")))
            try:
                entries.append(write_part(self.model, part, self.outdir, self.model_name))
            except Exception as exc:  # returned, not raised: the driver records it and goes on
                entries.append(_error_entry(part, exc))
        return {"entry": np.array([json.dumps(e) for e in entries], dtype=object)}


def _run_ray(model_name: str, todo: list[Part], outdir: Path, workers: int, scheduler: str | None) -> Iterator[dict]:
    try:
        import ray
    except ImportError:
        raise ECGError(None, "the ray engine needs Ray: pip install 'ecglens[ray]'") from None
    if not todo:
        return
    started = not ray.is_initialized()
    if started:
        if scheduler:
            ray.init(address=scheduler)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        items = [{"index": p.index, "paths": "\n".join(p.paths)} for p in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_RayPartPredictor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                            fn_constructor_args=(model_name, str(outdir.resolve())), num_cpus=1)
        for row in ds.iter_rows():
            yield json.loads(row["entry"])
    finally:
        if started:
            ray.shutdown()


def read_output(outdir: str | os.PathLike):
    """Every finished part of ``outdir`` as one pandas DataFrame, in part order."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted(Path(outdir).glob("part-*.parquet"))
    if not files:
        raise ECGError(outdir, "no finished parts here")
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)

