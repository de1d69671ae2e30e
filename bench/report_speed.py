"""Report size and time per record: ``ecglens report`` on every bundled sample with every shipped model.

For each record: wall and CPU seconds to build its page (models loaded once, before), the page's size
and its figures; the models' load time; the machine's load average before and after (other jobs share
the 2 cores, so wall time is an upper bound and CPU time the work itself). Targets: under 5 MB and 5 s.

    python bench/report_speed.py                  # -> bench/results/report_speed.{json,md}
    python bench/report_speed.py --threads 2      # torch intra-op threads (default 1)
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARGET_MB, TARGET_S = 5.0, 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    args = ap.parse_args()
    import torch
    from tqdm import tqdm

    from ecglens.report import Reporter, write_reports
    from ecglens.samples import list_samples, sample_path

    torch.set_num_threads(args.threads)
    records = [(s.ecg_id, 100) for s in list_samples()] + [(s.ecg_id, 500) for s in list_samples() if 500 in s.rates][:2]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        reporter = Reporter(workdir=tmp)
        load_s = time.perf_counter() - t0
        rows = []
        for i, (eid, rate) in enumerate(tqdm(records, desc="reports", unit="record")):
            c0, w0 = time.process_time(), time.perf_counter()
            result = write_reports([sample_path(eid, rate)], Path(tmp) / f"{eid}_{rate}", reporter)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            row = result["rows"][0]
            rows.append({"ecg_id": eid, "rate": rate, "first": i == 0, "wall_s": wall, "cpu_s": cpu,
                         "build_s": row["seconds"], "mb": row["bytes"] / 1e6, "figures": row["figures"],
                         "called": row["called"]})
    later = [r for r in rows if not r["first"]]
    summary = {"records": len(rows), "models": [m.name for m in reporter.models], "model_load_s": load_s,
               "max_mb": max(r["mb"] for r in rows), "mean_mb": sum(r["mb"] for r in rows) / len(rows),
               "mean_wall_s": sum(r["wall_s"] for r in later) / len(later),
               "mean_cpu_s": sum(r["cpu_s"] for r in later) / len(later),
               "max_wall_s": max(r["wall_s"] for r in later), "first_wall_s": rows[0]["wall_s"]}
    summary["under_targets"] = {"size": summary["max_mb"] < TARGET_MB, "time_cpu": summary["mean_cpu_s"] < TARGET_S,
                                "time_wall": summary["mean_wall_s"] < TARGET_S}
    machine = {"cpus": os.cpu_count(), "torch_threads": args.threads, "python": platform.python_version(),
               "load_average_before": load_before, "load_average_after": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "report_speed.json", {"summary": summary, "rows": rows, "machine": machine}, indent=2)
    lines = [
        "# Report size and time per record",
        "",
        f"`ecglens report` with every shipped model ({', '.join(summary['models'])}; loaded once in "
        f"{load_s:.1f} s) on the bundled samples (100 Hz, and the first two at 500 Hz). Wall: seconds per page "
        "(the first page includes one-time warm-up); CPU: this process's CPU seconds, the work itself when other "
        f"jobs share the cores. Targets: under {TARGET_MB:g} MB and {TARGET_S:g} s per record. "
        "Regenerate with `python bench/report_speed.py`.",
        "",
        "| record | rate (Hz) | wall (s) | CPU (s) | page (MB) | figures | called by any model |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['ecg_id']}{' (first)' if r['first'] else ''} | {r['rate']} | {r['wall_s']:.2f} | "
                     f"{r['cpu_s']:.2f} | {r['mb']:.2f} | {r['figures']} | {', '.join(r['called']) or '-'} |")
    lines += ["", f"Mean after the first: {summary['mean_wall_s']:.2f} s wall, {summary['mean_cpu_s']:.2f} s CPU "
                  f"(max {summary['max_wall_s']:.2f} s wall); pages {summary['mean_mb']:.2f} MB on average, "
                  f"{summary['max_mb']:.2f} MB at most.",
              "", f"Machine: {machine['cpus']} CPUs, torch threads {args.threads}, Python {machine['python']}; load "
                  f"average {load_before[0]:.1f} before, {machine['load_average_after'][0]:.1f} after (other jobs).", ""]
    write_text_atomic(args.out / "report_speed.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
