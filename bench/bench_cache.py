"""Benchmark: decoding WFDB every epoch vs. the memory-mapped signal cache.

On the local PTB-XL set at 100 Hz with Bandpass(0.5-40 Hz) + FixLength(10 s):
(a) one epoch reading and preprocessing every WFDB record, (b) building the cache
cold, (c) warm-cache epochs streaming every record in shuffled batches of 128
(random permutation, gathered per batch, as a training loader does) and in
order. Memory: peak RSS (ru_maxrss) and, during streaming, the growth of the
process's anonymous memory and the tracemalloc peak, which stay at a few batches
however large the cache is (the memory map itself is file-backed page cache).

    .venv/bin/python bench/bench_cache.py [--root DIR] [--epochs 3]

Writes bench/results/cache.json and bench/results/cache.md; the cache lives in
bench/work/cache (git-ignored) and is rebuilt from scratch on every run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from ecglens.datasets import PTBXL, cache_size_bytes, iter_batches  # noqa: E402
from ecglens.io import read_ecg  # noqa: E402
from ecglens.preprocess import Bandpass, FixLength, Pipeline  # noqa: E402
from ecglens.training import peak_rss_mib  # noqa: E402

BATCH = 128
TARGET_WARM = 20_000


def rss_parts_mib() -> dict[str, float]:
    """Anonymous and file-backed resident memory from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def epoch_shuffled(signals, rng) -> float:
    """Seconds for one pass in random order; touches every batch so nothing is lazy."""
    t = time.perf_counter()
    total = 0.0
    for batch in iter_batches(signals, BATCH, rng.permutation(len(signals))):
        total += float(batch[:, 0, 0].sum())
    return time.perf_counter() - t


def epoch_sequential(signals) -> float:
    t = time.perf_counter()
    total = 0.0
    for batch in iter_batches(signals, BATCH):
        total += float(batch[:, 0, 0].sum())
    return time.perf_counter() - t


def main() -> int:
    default_root = os.environ.get("ECGLENS_PTBXL", str(REPO.parent / "shared" / "data" / "ptb-xl"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=default_root)
    parser.add_argument("--epochs", type=int, default=3, help="warm epochs per mode (best and mean reported)")
    args = parser.parse_args()

    cache_dir = HERE / "work" / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    pipeline = Pipeline((Bandpass(0.5, 40.0), FixLength(10.0)))
    ds = PTBXL(args.root, sampling_rate=100)
    ids = ds.labels("all", folds=range(1, 11)).ecg_ids
    n = len(ids)

    # (a) decode + preprocess every record, as a loader without a cache does each epoch
    t = time.perf_counter()
    for ecg_id in ids:
        ecg = read_ecg(ds.header_path(ecg_id), sampling_rate=100)
        pipeline.apply_signal(ecg.signal, ecg.sampling_rate)
    wfdb_s = time.perf_counter() - t
    rss_after_wfdb = peak_rss_mib()

    # (b) cold build
    t = time.perf_counter()
    split = ds.load("all", folds=range(1, 11), pipeline=pipeline, cache_dir=cache_dir, progress=False)
    build_s = time.perf_counter() - t
    rss_after_build = peak_rss_mib()
    directory = Path(split.signals.filename).parent
    size_mib = cache_size_bytes(directory) / 2**20

    # (c) warm cache: reopen, then stream
    t = time.perf_counter()
    split = ds.load("all", folds=range(1, 11), pipeline=pipeline, cache_dir=cache_dir, progress=False)
    open_s = time.perf_counter() - t
    signals = split.signals
    rng = np.random.default_rng(0)
    epoch_sequential(signals)  # page the file in once so every timed epoch sees the same warm page cache
    shuffled = [epoch_shuffled(signals, rng) for _ in range(args.epochs)]
    sequential = [epoch_sequential(signals) for _ in range(args.epochs)]

    before = rss_parts_mib()
    tracemalloc.start()
    epoch_shuffled(signals, rng)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = rss_parts_mib()

    batch_mib = BATCH * signals[0].nbytes / 2**20
    result = {
        "dataset": {"root": str(args.root), "records": n, "skipped": len(split.skipped), "shape": list(signals.shape),
                    "sampling_rate": split.sampling_rate},
        "pipeline": pipeline.to_dict(),
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()]},
        "wfdb_epoch": {"seconds": wfdb_s, "records_per_s": n / wfdb_s},
        "cold_build": {"seconds": build_s, "records_per_s": n / build_s, "cache_mib": size_mib},
        "warm_open_seconds": open_s,
        "warm_shuffled": {"batch_size": BATCH, "epoch_seconds": shuffled,
                          "records_per_s_best": n / min(shuffled), "records_per_s_mean": n / float(np.mean(shuffled))},
        "warm_sequential": {"batch_size": BATCH, "epoch_seconds": sequential,
                            "records_per_s_best": n / min(sequential), "records_per_s_mean": n / float(np.mean(sequential))},
        "memory_mib": {
            "batch": batch_mib,
            "max_rss_after_wfdb_epoch": rss_after_wfdb,
            "max_rss_after_build": rss_after_build,
            "max_rss_end": peak_rss_mib(),
            "streaming_epoch_anon_growth": after["RssAnon"] - before["RssAnon"],
            "streaming_epoch_tracemalloc_peak": traced_peak / 2**20,
            "rss_file_backed_end": after["RssFile"],
        },
        "target_warm_records_per_s": TARGET_WARM,
        "meets_target": n / float(np.mean(shuffled)) >= TARGET_WARM,
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "cache.json").write_text(json.dumps(result, indent=2) + "\n")

    mem = result["memory_mib"]
    rows = [
        ("(a) WFDB read + pipeline, one epoch", f"{wfdb_s:.1f} s", f"{n / wfdb_s:,.0f}"),
        ("(b) cold cache build", f"{build_s:.1f} s", f"{n / build_s:,.0f}"),
        ("(c) warm cache, shuffled batches of 128 (mean)", f"{np.mean(shuffled) * 1000:.0f} ms", f"{n / np.mean(shuffled):,.0f}"),
        ("(c) warm cache, sequential batches of 128 (mean)", f"{np.mean(sequential) * 1000:.0f} ms", f"{n / np.mean(sequential):,.0f}"),
    ]
    md = [
        "# Signal cache benchmark",
        "",
        f"Local PTB-XL, {n} records at 100 Hz -> {tuple(signals.shape)} float32 ({size_mib:.0f} MiB on disk); "
        f"pipeline Bandpass(0.5-40 Hz) + FixLength(10 s); {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}; load average at the end {os.getloadavg()[1]:.1f} (the machine is shared, so "
        f"absolute speeds vary from run to run). Warm = cache reopened (open took {open_s * 1000:.1f} ms) and in the page cache; "
        f"{args.epochs} epochs per mode.",
        "",
        "| step | time | records/s |",
        "|---|---:|---:|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"Target >= {TARGET_WARM:,} records/s warm (shuffled): {'met' if result['meets_target'] else 'NOT met'}.",
        "",
        f"Memory: peak RSS {mem['max_rss_end']:.0f} MiB (after the WFDB epoch {mem['max_rss_after_wfdb_epoch']:.0f}, "
        f"after the build {mem['max_rss_after_build']:.0f}: the rows written through the map are file-backed pages); during a shuffled streaming epoch the anonymous memory "
        f"grew by {mem['streaming_epoch_anon_growth']:.1f} MiB and tracemalloc peaked at "
        f"{mem['streaming_epoch_tracemalloc_peak']:.1f} MiB (one batch = {batch_mib:.1f} MiB); the mapped file accounts "
        f"for {mem['rss_file_backed_end']:.0f} MiB of reclaimable file-backed RSS.",
        "",
    ]
    (results / "cache.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
