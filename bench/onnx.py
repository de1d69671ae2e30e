"""Benchmark: PyTorch vs onnxruntime throughput for every shipped classifier.

For each classifier and batch size (1 and 64 records, cycling the bundled
samples) it times, on ``--threads`` threads for both runtimes (best of repeated
calls, the two runtimes called in turn so that other jobs' load hits both alike):

- network only: the network on the batch's network inputs (every window of
  the preprocessed records, or the median beats), records/s;
- end to end: ``predict_ecgs`` on the records (preprocessing, windows or beat
  extraction, network, calibration), records/s;

and the largest probability difference between the runtimes on the samples.

    .venv/bin/python bench/onnx.py [--threads 2] [--seconds 1.0]

Writes bench/results/onnx.json and bench/results/onnx.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# this script is named like the onnx package: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import torch

import ecglens
from ecglens.atomic import write_json_atomic, write_text_atomic
from ecglens.models.classifier import Classifier, make_windows
from ecglens.models.factorecg.classifier import BeatModelClassifier, FactorECGClassifier
from ecglens.models.onnx_runtime import use_onnx
from ecglens.samples import list_samples, load_sample

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
BATCHES = (1, 64)


def timed(fns: dict, seconds: float, min_repeats: int = 5) -> dict:
    """Best seconds per call of each function, called in turn (so load from other jobs hits all alike)
    at least ``min_repeats`` times each and for ``seconds`` per function in all."""
    times = {key: [] for key in fns}
    for fn in fns.values():
        fn()  # warm-up
    start = time.perf_counter()
    while min(map(len, times.values())) < min_repeats or time.perf_counter() - start < seconds * len(fns):
        for key, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    return {key: min(values) for key, values in times.items()}


def network_input(clf: Classifier, ecgs: list) -> torch.Tensor:
    """What the network sees for these records: every window, or one median beat per record."""
    x = torch.from_numpy(np.stack([clf.preprocess(e) for e in ecgs]).astype(np.float32))
    if isinstance(clf, BeatModelClassifier):
        return x[:, :12]  # FactorECG with rhythm features carries them as a 13th row the network never sees
    windows = make_windows(x, clf.window, clf.stride)
    return windows.reshape(-1, *windows.shape[2:])


def network_call(clf: Classifier):
    """The network as ``predict_*`` calls it (FactorECG: the VAE encoder)."""
    return clf.vae.encode if isinstance(clf, FactorECGClassifier) else clf.model


def _network(net, x: torch.Tensor, batch_size: int) -> None:
    """The network on ``x`` in the chunks ``predict_*`` uses."""
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            net(x[i:i + batch_size])


def bench_model(name: str, ecgs: list, threads: int, seconds: float) -> dict:
    clfs = {"torch": ecglens.load_model(name, device="cpu").loaded,
            "onnx": use_onnx(ecglens.load_model(name, device="cpu").loaded, threads=threads, source=name)}
    probs = {rt: clf.predict_ecgs(ecgs) for rt, clf in clfs.items()}
    row = {"model": name, "max_abs_diff": float(np.abs(probs["torch"] - probs["onnx"]).max()), "runs": []}
    for batch in BATCHES:
        records = [ecgs[i % len(ecgs)] for i in range(batch)]
        fns = {}
        for runtime, clf in clfs.items():
            x, net = network_input(clf, records), network_call(clf)
            fns[(runtime, "network")] = lambda x=x, net=net, bs=clf.batch_size: _network(net, x, bs)
            fns[(runtime, "end_to_end")] = lambda clf=clf, records=records: clf.predict_ecgs(records)
        best = timed(fns, seconds)
        for runtime in clfs:
            net_rate, e2e_rate = batch / best[(runtime, "network")], batch / best[(runtime, "end_to_end")]
            row["runs"].append({"batch": batch, "runtime": runtime, "network_records_per_s": net_rate,
                                "end_to_end_records_per_s": e2e_rate})
            print(f"{name:<14} batch {batch:>2} {runtime:<5} network {net_rate:9.1f} rec/s   "
                  f"end to end {e2e_rate:8.1f} rec/s", flush=True)
    return row


def markdown(result: dict) -> str:
    load = result["load_average_1min"]
    intro = ("Records/s, best of at least 5 calls, torch and onnx called in turn; network only = the network on "
             "the batch's windows or median beats; end to end = `predict_ecgs` (preprocessing, windows or beats, "
             f"network, calibration). Machine: {result['cpus']} CPUs, 1-minute load average {load[0]:.1f} before "
             f"and {load[1]:.1f} after (other jobs on the same cores make single runs noisy).")
    header = ("| model | batch | torch network | onnx network | speed-up | torch end to end | onnx end to end "
              "| speed-up | max abs prob diff |")
    lines = [f"# ONNX vs PyTorch ({result['threads']} threads, {result['machine']})", "", intro, "", header,
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["models"]:
        for batch in BATCHES:
            t, o = ({r["runtime"]: r for r in row["runs"] if r["batch"] == batch}[k] for k in ("torch", "onnx"))
            lines.append(f"| {row['model']} | {batch} | {t['network_records_per_s']:.1f} | "
                         f"{o['network_records_per_s']:.1f} | "
                         f"{o['network_records_per_s'] / t['network_records_per_s']:.2f}x | "
                         f"{t['end_to_end_records_per_s']:.1f} | {o['end_to_end_records_per_s']:.1f} | "
                         f"{o['end_to_end_records_per_s'] / t['end_to_end_records_per_s']:.2f}x | "
                         f"{row['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent on each measurement (default 1)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(args.threads)
    ecgs = [load_sample(s.ecg_id) for s in list_samples()]
    names = [n for n in ecglens.list_models() if isinstance(ecglens.load_model(n, device="cpu").loaded, Classifier)]
    import onnxruntime

    load_before = os.getloadavg()[0]
    result = {"threads": args.threads, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
              "samples": len(ecgs), "models": [bench_model(n, ecgs, args.threads, args.seconds) for n in names],
              "load_average_1min": [load_before, os.getloadavg()[0]]}
    write_json_atomic(RESULTS / "onnx.json", result, indent=2)
    write_text_atomic(RESULTS / "onnx.md", markdown(result))
    print(f"wrote {RESULTS / 'onnx.json'} and {RESULTS / 'onnx.md'}")


if __name__ == "__main__":
    main()
