"""Benchmark: inference speed of every shipped classifier against the machine's matrix-product peak.

Two worker processes, one on the working tree's code (new) and one on a committed
revision's (old, ``--old``, default HEAD, unpacked with ``git archive`` under
bench/work/), load the same PTB-XL test-fold records (decoded, mV, 100 Hz) and the
same shipped models once; the parent then asks them in turn, ``--rounds`` times,
to time one pass over the records in batches of 64; each figure is the best of the
rounds (other jobs on shared cores only ever slow a pass down):

- network: the network on the records' network inputs (every window, or the median
  beat), in the chunks ``predict_*`` uses, records/s and GFLOP/s;
- preprocessing: raw record -> network input (pipeline; median-beat models: beat
  extraction), records/s;
- end to end: ``predict_ecgs`` (preprocessing, windows or beats, network,
  calibration), records/s: the benchmark table's "infer rec/s";

plus the peak: the best float32 matrix product of all rounds, GFLOP/s, on the same threads, through
both libraries torch computes with: MKL (``torch.mm`` at 1024, 2048 and 4096, ``torch.bmm`` of 16
1024x1024 products) and oneDNN (``F.linear`` on oneDNN tensors at the same sizes; the library torch's
convolutions run on), each after a warm-up call, best of 3 per round. On AMD CPUs MKL does not use
its AVX-512 kernels, so its sgemm reaches about half of oneDNN's and is no peak for networks whose
convolutions run on oneDNN. FLOPs per record are counted with ``torch.utils.flop_counter`` (matrix
products and convolutions, including ProtoECGNet's prototype-similarity convolutions;
element-wise work such as batch norm, activations and the cosine's norms and
divisions is not counted, nor FactorECG's per-statement logistic models in numpy).
Median-beat models use the first ``--beat-records`` records that yield a beat.

    .venv/bin/python bench/inference_speed.py [--rounds 5] [--threads 2] [--old REVISION] [--out DIR]

A quick check: ``--rounds 1 --records 128 --beat-records 16 --out /tmp/speed`` (fewer records, results
elsewhere than bench/results).

``--old`` must name a revision whose code runs as a whole: HEAD while the changes
measured are uncommitted, the commit before them once they are committed.

Writes inference_speed.json and inference_speed.md to ``--out`` (default bench/results).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / "work"
DATA = REPO.parent / "shared" / "data" / "ptb-xl"
MODELS = ("baseline", "protoecgnet", "factorecg", "beat-blackbox")
BATCH = 64
TEST_FOLD = 10
PEAK_SIZES = (1024, 2048, 4096)  # square float32 matrix products timed for the peak
PEAK_BATCH = 16  # products of 1024 x 1024 matrices in the batched one
TARGET_PROTO_RATE, TARGET_PROTO_SPEEDUP = 1200.0, 2.0
MARK = "@@ "  # worker answers are the stdout lines starting with this


# ---------------------------------------------------------------- worker (runs on one code tree)

def _emit(obj) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _setup(args) -> tuple[dict, dict]:
    """Load records and models; return the per-model state and what the parent needs to know."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import ecglens
    from ecglens.datasets import PTBXL
    from ecglens.errors import ECGError
    from ecglens.models.classifier import make_windows
    from ecglens.models.factorecg.classifier import BeatModelClassifier, FactorECGClassifier

    torch.set_num_threads(args.threads)
    ds = PTBXL(args.data, sampling_rate=100)
    records = [ds.read(int(i)) for i in ds.labels("all", (TEST_FOLD,)).ecg_ids][:args.records]
    state, info = {}, {"ecglens": ecglens.__file__, "torch": torch.__version__, "models": {}}
    for name in MODELS:
        clf = ecglens.load_model(name, device="cpu").loaded
        beats = isinstance(clf, BeatModelClassifier)
        usable, skipped = [], 0
        for ecg in records:
            if beats and len(usable) == args.beat_records:
                break
            try:
                usable.append((ecg, clf.preprocess(ecg)))
            except ECGError:
                skipped += 1
        ecgs = [e for e, _ in usable]
        net = clf.vae.encode if isinstance(clf, FactorECGClassifier) else clf.model
        inputs = []  # per batch of records: the network's input chunks, as predict_* feeds them
        for i in range(0, len(usable), BATCH):
            x = torch.from_numpy(np.stack([p for _, p in usable[i:i + BATCH]]).astype(np.float32))
            if beats:
                x = x[:, :12]  # FactorECG may append a row of rhythm features to the beat
            else:
                windows = make_windows(x, clf.window, clf.stride)
                x = windows.reshape(-1, *windows.shape[2:])
            inputs.append([x[j:j + clf.batch_size] for j in range(0, len(x), clf.batch_size)])
        per_record = sum(len(x) for chunks in inputs for x in chunks) / len(usable)  # windows (or beats) per record
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            net(inputs[0][0][:1])
        flops = counter.get_total_flops() * per_record
        by_op = {str(k): v * per_record for k, v in counter.get_flop_counts().get("Global", {}).items()}
        state[name] = {"clf": clf, "ecgs": ecgs, "net": net, "inputs": inputs}
        info["models"][name] = {"records": len(ecgs), "skipped": skipped, "network_inputs_per_record": per_record,
                                "flops_per_record": flops, "flops_by_op": by_op}
        if name == "protoecgnet":
            state[name]["branches"] = dict(clf.model.net.branches.items())
    _measure(state, warm=True)
    return state, info


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _timed_both(fn) -> tuple[float, float]:
    """Wall and CPU seconds (all the process's threads) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _run_network(net, inputs: list) -> None:
    import torch

    with torch.inference_mode():
        for chunks in inputs:
            for x in chunks:
                net(x)


def _peak(repeats: int) -> dict:
    """GFLOP/s of float32 matrix products on this process's threads, per library and size: each timed after a
    warm-up call, the best of ``repeats``."""
    import torch

    def best(fn, flops: float) -> float:
        fn()
        return flops / min(_timed(fn) for _ in range(repeats)) / 1e9

    out = {}
    with torch.inference_mode():
        for n in PEAK_SIZES:
            a, b = torch.randn(n, n), torch.randn(n, n)
            out[f"MKL mm {n}"] = best(lambda a=a, b=b: torch.mm(a, b), 2 * n ** 3)
            x, w = a.to_mkldnn(), b.t().contiguous().to_mkldnn()  # oneDNN's own layout: F.linear runs its sgemm
            out[f"oneDNN linear {n}"] = best(lambda x=x, w=w: torch.nn.functional.linear(x, w), 2 * n ** 3)
        a, b = torch.randn(PEAK_BATCH, 1024, 1024), torch.randn(PEAK_BATCH, 1024, 1024)
        out[f"MKL bmm {PEAK_BATCH}x1024"] = best(lambda: torch.bmm(a, b), 2 * PEAK_BATCH * 1024 ** 3)
    return out


def _measure(state: dict, warm: bool = False) -> dict:
    """One timed pass of everything (``warm``: a shorter untimed pass first)."""
    out = {"peak_gflop_per_s": _peak(1 if warm else 3)}
    for name, s in state.items():
        clf, ecgs = s["clf"], s["ecgs"]
        batches = [ecgs[i:i + BATCH] for i in range(0, len(ecgs), BATCH)][:1 if warm else None]
        inputs = s["inputs"][:len(batches)]
        many = getattr(clf, "preprocess_many", None)  # absent from the old code: one record at a time
        steps = {"network": lambda net=s["net"], inputs=inputs: _run_network(net, inputs),
                 "preprocess": lambda clf=clf, many=many, batches=batches: [
                     many(batch) if many else [clf.preprocess(e) for e in batch] for batch in batches],
                 "end_to_end": lambda clf=clf, batches=batches: [clf.predict_ecgs(batch) for batch in batches]}
        row = {}
        for key, fn in steps.items():
            row[f"{key}_s"], row[f"{key}_cpu_s"] = _timed_both(fn)
        for branch_name, branch in s.get("branches", {}).items():
            row[f"branch_{branch_name}_s"] = _timed(lambda branch=branch, inputs=inputs: _run_network(branch, inputs))
        out[name] = row
    return out


def worker(args) -> None:
    state, info = _setup(args)
    _emit(info)
    for line in sys.stdin:
        if line.strip() == "measure":
            _emit(_measure(state))
        elif line.strip() == "quit":
            break


# ---------------------------------------------------------------- parent

def old_tree(ref: str) -> tuple[Path, str]:
    """``src`` of a committed revision, unpacked once under bench/work/ (read-only use of git)."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    root = WORK / f"old_src_{sha[:12]}"
    if not (root / "src" / "ecglens").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "src"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root / "src", sha


class Worker:
    def __init__(self, src: Path, args):
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONWARNINGS="ignore")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(args.data),
               "--threads", str(args.threads), "--records", str(args.records), "--beat-records", str(args.beat_records)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self.read()

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"worker exited with {self.proc.wait()}")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def summarise(info: dict, rounds: dict) -> dict:
    """Best over rounds: rates, GFLOP/s, share of the peak (the best matrix product of all rounds)."""
    best = max
    peaks = {kind: max(r["peak_gflop_per_s"][kind] for side in rounds.values() for r in side)
             for kind in next(iter(rounds.values()))[0]["peak_gflop_per_s"]}
    peak = max(peaks.values())
    models = {}
    for name in MODELS:
        row = {}
        for side, results in rounds.items():
            meta = info[side]["models"][name]
            n, flops = meta["records"], meta["flops_per_record"]
            net_rate = best(n / r[name]["network_s"] for r in results)
            row[side] = {"records": n, "mflop_per_record": flops / 1e6, "network_records_per_s": net_rate,
                         "network_gflop_per_s": net_rate * flops / 1e9,
                         "network_share_of_peak": net_rate * flops / 1e9 / peak,
                         "preprocess_records_per_s": best(n / r[name]["preprocess_s"] for r in results),
                         "end_to_end_records_per_s": best(n / r[name]["end_to_end_s"] for r in results),
                         "cpu_ms_per_record": {key: 1e3 * min(r[name][f"{key}_cpu_s"] for r in results) / n
                                               for key in ("network", "preprocess", "end_to_end")},
                         "flops_by_op": meta["flops_by_op"]}
            branches = sorted({k for r in results for k in r[name] if k.startswith("branch_")})
            if branches:
                row[side]["branch_ms_per_record"] = {k[len("branch_"):-2]: 1e3 * min(r[name][k] for r in results) / n
                                                     for k in branches}
        row["end_to_end_speedup"] = row["new"]["end_to_end_records_per_s"] / row["old"]["end_to_end_records_per_s"]
        row["network_speedup"] = row["new"]["network_records_per_s"] / row["old"]["network_records_per_s"]
        row["preprocess_speedup"] = row["new"]["preprocess_records_per_s"] / row["old"]["preprocess_records_per_s"]
        models[name] = row
    proto, base = models["protoecgnet"], models["baseline"]
    targets = {
        "protoecgnet_end_to_end": {"new": proto["new"]["end_to_end_records_per_s"],
                                   "old": proto["old"]["end_to_end_records_per_s"],
                                   "met": proto["new"]["end_to_end_records_per_s"] >= TARGET_PROTO_RATE
                                   and proto["end_to_end_speedup"] >= TARGET_PROTO_SPEEDUP},
        "baseline_not_slower": {"speedup": base["end_to_end_speedup"], "met": base["end_to_end_speedup"] >= 1.0},
        "protoecgnet_preprocessing_not_the_bottleneck": {
            "preprocess_records_per_s": proto["new"]["preprocess_records_per_s"],
            "network_records_per_s": proto["new"]["network_records_per_s"],
            "met": proto["new"]["preprocess_records_per_s"] > proto["new"]["network_records_per_s"]},
    }
    return {"peak_gflop_per_s": peak, "peaks_gflop_per_s": peaks, "models": models, "targets": targets}


def markdown(result: dict) -> str:
    s = result["summary"]
    load = result["load_average"]
    lines = [
        f"# Inference speed: old ({result['old_revision'][:12]}) vs new (working tree), {result['threads']} torch "
        f"threads, {result['cpus']} CPUs",
        "",
        f"PTB-XL test fold (fold {TEST_FOLD}), decoded records at 100 Hz, batches of {BATCH} records; old and new "
        f"code in two worker processes asked in turn, {result['rounds']} rounds, best of the rounds. Peak: the "
        f"best float32 matrix product of all rounds and both workers, through MKL or oneDNN (table below): "
        f"**{s['peak_gflop_per_s']:.0f} GFLOP/s**. FLOPs "
        "counted by `torch.utils.flop_counter` (convolutions and matrix products, ProtoECGNet's similarity "
        "convolutions included; element-wise work not counted). Network = the network alone on the records' windows "
        "or beats; preprocessing = raw record to network input; end to end = `predict_ecgs` (the benchmark's infer "
        f"rec/s). 1-minute load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} after "
        f"(max during the run {load['max_1min']:.1f}): other jobs shared the cores, so single numbers are noisy.",
        "",
        "| model | records | MFLOP/record | network rec/s old | new | GFLOP/s old | new | % of peak new "
        "| preprocessing rec/s old | new | end to end rec/s old | new | end-to-end speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in s["models"].items():
        o, n = row["old"], row["new"]
        lines.append(
            f"| {name} | {n['records']} | {n['mflop_per_record']:.1f} | {o['network_records_per_s']:.0f} | "
            f"{n['network_records_per_s']:.0f} | {o['network_gflop_per_s']:.1f} | {n['network_gflop_per_s']:.1f} | "
            f"{100 * n['network_share_of_peak']:.0f}% | {o['preprocess_records_per_s']:.0f} | "
            f"{n['preprocess_records_per_s']:.0f} | {o['end_to_end_records_per_s']:.0f} | "
            f"{n['end_to_end_records_per_s']:.0f} | {row['end_to_end_speedup']:.2f}x |")
    lines += ["", "Matrix-product peak by library and size (GFLOP/s, best of all rounds; 3 per round and worker after a "
              "warm-up call). MKL (`torch.mm`, `torch.bmm`) does not use its AVX-512 kernels on AMD CPUs; oneDNN "
              "(`F.linear` on oneDNN tensors) is the library torch's convolutions run on, so its sgemm is the "
              "peak those networks can approach:", "", "| product | GFLOP/s |", "|---|---:|"]
    lines += [f"| {kind} | {v:.0f} |" for kind, v in s["peaks_gflop_per_s"].items()]
    lines += ["", "CPU time per record (ms, all threads of the worker; less sensitive to other jobs than wall time, "
              "but it counts threads waiting for work too):", "",
              "| model | network old | new | preprocessing old | new | end to end old | new |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in s["models"].items():
        o, n = row["old"]["cpu_ms_per_record"], row["new"]["cpu_ms_per_record"]
        lines.append(f"| {name} | {o['network']:.3f} | {n['network']:.3f} | {o['preprocess']:.3f} | "
                     f"{n['preprocess']:.3f} | {o['end_to_end']:.3f} | {n['end_to_end']:.3f} |")
    proto = s["models"]["protoecgnet"]
    if "branch_ms_per_record" in proto["new"]:
        lines += ["", "ProtoECGNet per branch (backbone, add-on, prototypes, last layer), wall ms per record:", "",
                  "| branch | old | new |", "|---|---:|---:|"]
        for b, v in proto["new"]["branch_ms_per_record"].items():
            lines.append(f"| {b} | {proto['old']['branch_ms_per_record'][b]:.3f} | {v:.3f} |")
    t = s["targets"]
    verdict = {True: "met", False: "not met"}
    lines += ["", "Targets (issue 24, item 2):", "",
              f"- ProtoECGNet end to end at least {TARGET_PROTO_RATE:.0f} rec/s and {TARGET_PROTO_SPEEDUP:.0f}x old: "
              f"{t['protoecgnet_end_to_end']['old']:.0f} -> {t['protoecgnet_end_to_end']['new']:.0f} rec/s "
              f"({proto['end_to_end_speedup']:.2f}x): {verdict[t['protoecgnet_end_to_end']['met']]}",
              f"- baseline not slower end to end: {t['baseline_not_slower']['speedup']:.2f}x: "
              f"{verdict[t['baseline_not_slower']['met']]}",
              f"- ProtoECGNet preprocessing faster than its network: "
              f"{t['protoecgnet_preprocessing_not_the_bottleneck']['preprocess_records_per_s']:.0f} vs "
              f"{t['protoecgnet_preprocessing_not_the_bottleneck']['network_records_per_s']:.0f} rec/s: "
              f"{verdict[t['protoecgnet_preprocessing_not_the_bottleneck']['met']]}",
              "", f"Regenerate: `{result['command']}`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="timed passes per code tree, alternating (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--records", type=int, default=10 ** 6, help="at most this many test-fold records (default all)")
    p.add_argument("--beat-records", type=int, default=64,
                   help="records for the median-beat models, whose old beat extraction is slow (default 64)")
    p.add_argument("--old", default="HEAD", help="the revision to compare with (default HEAD)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the results (default bench/results)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    old_src, sha = old_tree(args.old)
    load_before = os.getloadavg()
    loads = [load_before[0]]
    workers = {"old": Worker(old_src, args), "new": Worker(REPO / "src", args)}
    rounds: dict[str, list] = {side: [] for side in workers}
    try:
        for r in range(args.rounds):
            for side, w in (workers.items() if r % 2 == 0 else reversed(list(workers.items()))):
                rounds[side].append(w.ask("measure"))
                loads.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds}: load {loads[-1]:.1f}", flush=True)
    finally:
        for w in workers.values():
            w.close()
    info = {side: w.info for side, w in workers.items()}
    result = {"command": "python bench/inference_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "old_revision": sha, "threads": args.threads, "cpus": os.cpu_count(), "rounds": args.rounds,
              "machine": platform.processor() or platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "load_average": {"before": list(load_before), "after": list(os.getloadavg()), "max_1min": max(loads)},
              "workers": info, "raw": rounds, "summary": summarise(info, rounds)}
    from ecglens.atomic import write_json_atomic, write_text_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "inference_speed.json", result, indent=2)
    write_text_atomic(args.out / "inference_speed.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
