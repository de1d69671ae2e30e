"""Benchmark: batch prediction throughput, local vs Dask with 1 and 2 workers, and memory per worker.

Predicts the PTB-XL test fold (fold 10, 100 Hz) with ``ecglens.batch.run_batch`` into a fresh output
directory per engine: ``local`` (one process, torch's default threads), then a Dask ``LocalCluster`` on
127.0.0.1 with 1 and 2 single-threaded worker processes. For Dask the cluster start and the one model
load per worker are timed apart (``startup_s``) from the run; records/s is over the run. Memory is the
resident set (RSS, now and peak) of the local process and of each worker after its run.

    .venv/bin/python bench/batch_scale.py [--root ../shared/data/ptb-xl] [--model baseline] [--part-size 32]

Writes bench/results/batch_scale.json and bench/results/batch_scale.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MIB = 2 ** 20


def memory_mib() -> dict:
    """This process's resident set now and at its peak, in MiB."""
    import psutil

    return {"rss_mib": round(psutil.Process().memory_info().rss / MIB, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_local(model: str, paths: list[str], out: Path, part_size: int) -> dict:
    from ecglens.batch import run_batch

    t0 = time.perf_counter()
    result = run_batch(model, paths, out, part_size=part_size, progress=False)
    wall = time.perf_counter() - t0
    return {"engine": "local", "workers": 1, "threads_per_worker": _torch_threads(), "startup_s": None,
            "run_s": round(wall, 2), "records": result.rows, "records_per_s": round(result.rows / wall, 1),
            "failures": len(result.failures), "memory_per_worker": [memory_mib()]}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_dask(model: str, paths: list[str], out: Path, part_size: int, workers: int) -> dict:
    from dask.distributed import Client, LocalCluster

    from ecglens.batch import model_identity, run_batch, worker_model

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(worker_model, model_identity(model))  # the one model load per worker, timed as start-up
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = run_batch(model, paths, out, engine="dask", part_size=part_size,
                           scheduler=cluster.scheduler_address, progress=False)
        wall = time.perf_counter() - t1
        memory = list(client.run(memory_mib).values())
        threads = sorted(set(client.run(_torch_threads).values()))
    return {"engine": "dask", "workers": workers, "threads_per_worker": threads[0] if len(threads) == 1 else threads,
            "startup_s": round(startup, 2), "run_s": round(wall, 2), "records": result.rows,
            "records_per_s": round(result.rows / wall, 1), "failures": len(result.failures),
            "memory_per_worker": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--fold", type=int, default=10)
    parser.add_argument("--part-size", type=int, default=32)
    args = parser.parse_args()

    from ecglens.datasets import PTBXL

    data = PTBXL(args.root)
    ids = data.records.index[data.records["fold"] == args.fold]
    paths = [str(data.header_path(i)) for i in ids]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecglens-batch-bench-") as tmp:
        for name, job in (("local", lambda out: run_local(args.model, paths, out, args.part_size)),
                          ("dask-1", lambda out: run_dask(args.model, paths, out, args.part_size, 1)),
                          ("dask-2", lambda out: run_dask(args.model, paths, out, args.part_size, 2))):
            out = Path(tmp) / name
            rows.append({**job(out), "load_average_1min_after": round(os.getloadavg()[0], 2)})
            shutil.rmtree(out)
            print(json.dumps(rows[-1]), flush=True)
    by = {(r["engine"], r["workers"]): r for r in rows}
    doc = {"model": args.model, "records": len(paths), "fold": args.fold, "part_size": args.part_size,
           "cpus": os.cpu_count(), "python": platform.python_version(), "runs": rows,
           "dask_scaling_2_vs_1": round(by[("dask", 2)]["records_per_s"] / by[("dask", 1)]["records_per_s"], 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch_scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [(f"# Batch prediction scaling ({args.model}, PTB-XL fold {args.fold}, {len(paths)} records, "
              f"part size {args.part_size}, {os.cpu_count()} CPUs)"), "",
             ("| engine | workers | threads/worker | start-up s | run s | records/s | failures | RSS per worker MiB (peak) "
              "| load avg after |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = ", ".join(f"{m['rss_mib']:.0f} ({m['peak_rss_mib']:.0f})" for m in r["memory_per_worker"])
        lines.append(f"| {r['engine']} | {r['workers']} | {r['threads_per_worker']} | {r['startup_s'] or '-'} | "
                     f"{r['run_s']} | {r['records_per_s']} | {r['failures']} | {mem} | {r['load_average_1min_after']} |")
    lines += ["", (f"Dask 2 workers vs 1: {doc['dask_scaling_2_vs_1']}x records/s. Local includes its one model load "
                   "in the run; Dask start-up (cluster + one model load per worker) is timed apart. The load average "
                   f"(other jobs on the same {os.cpu_count()} CPUs) bounds what a second worker can add.")]
    (RESULTS / "batch_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
