"""Benchmark: what one ProtoECGNet explanation costs on a bundled record (files, bytes, seconds).

Explains bundled PTB-XL record(s) with the shipped ``protoecgnet`` model at the default options
(``Model.explain`` then ``Explanation.save`` with figures) into a temporary directory and records
the statements explained, figures written, their total size and the wall time of explain + save.
Each run is stored under a ``--label`` ("before" / "after" a change), so one table compares them;
rows with other labels are kept. Wall times on a shared machine vary with its load; CPU seconds (this
process) compare code states more fairly. The first record's explain time includes lazy imports.

    .venv/bin/python bench/explain_size.py --label after [--records 172 310]

Writes bench/results/explain_size.json and bench/results/explain_size.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
RESULTS = REPO / "bench" / "results"
DEFAULT_RECORDS = (172,)  # CRBBB + LAFB: a record on which the shipped model calls several statements


def measure(model, ecg_id: int) -> dict:
    """Explain one bundled record with default options and save it with figures; sizes and times."""
    from ecglens.samples import load_sample

    ecg = load_sample(ecg_id)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        explanation = model.explain(ecg)
        t1 = time.perf_counter()
        explanation.save(tmp, progress=False)
        t2, c2 = time.perf_counter(), time.process_time()
        files = [p for p in Path(tmp).iterdir() if p.is_file()]
        sizes = {p.name: p.stat().st_size for p in files}
    figures = [n for n in sizes if n != "explanation.json"]
    return {"record": ecg_id, "statements_explained": len(explanation.data["statements"]),
            "figures": len(figures), "figure_bytes": sum(sizes[n] for n in figures),
            "json_bytes": sizes.get("explanation.json", 0), "total_bytes": sum(sizes.values()),
            "largest_figure_bytes": max((sizes[n] for n in figures), default=0),
            "explain_s": t1 - t0, "save_s": t2 - t1, "total_s": t2 - t0, "cpu_s": c2 - c0}


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _totals(rows: list[dict], label: str) -> str:
    own = [r for r in rows if r["label"] == label]
    return (f"{label}: {len(own)} records, {sum(r['statements_explained'] for r in own)} statements, "
            f"{sum(r['figures'] for r in own)} figures, {sum(r['total_bytes'] for r in own) / 1e6:.1f} MB, "
            f"{sum(r['cpu_s'] for r in own):.1f} CPU s")


def write_tables(rows: list[dict]) -> str:
    lines = ["# Explanation size and time", "",
             ("One ProtoECGNet explanation (shipped model, default options, figures drawn) of a bundled record. "
              "Written by `bench/explain_size.py`; each row is labelled with the code state it measured."), "",
             "| label | record | statements | figures | total MB | largest figure kB | explain s | save s | total s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['record']} | {r['statements_explained']} | {r['figures']} | "
                     f"{r['total_bytes'] / 1e6:.2f} | {r['largest_figure_bytes'] / 1e3:.0f} | {r['explain_s']:.2f} | "
                     f"{r['save_s']:.2f} | {r['total_s']:.2f} | {r['cpu_s']:.2f} |")
    lines += ["", "Machine: " + ", ".join(sorted({r['machine'] for r in rows})) + ". Commits: " +
              ", ".join(f"{label} {commit}" for label, commit in dict.fromkeys((r['label'], r['commit']) for r in rows)) +
              ". Totals: " + "; ".join(_totals(rows, label) for label in dict.fromkeys(r['label'] for r in rows)) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", required=True, help="what code state this run measures, e.g. before / after")
    p.add_argument("--records", type=int, nargs="+", default=list(DEFAULT_RECORDS), help="bundled ecg_ids")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    import torch

    from ecglens.api import load_model
    from ecglens.atomic import write_json_atomic, write_text_atomic

    torch.set_num_threads(args.threads)
    model = load_model("protoecgnet")
    machine = f"{os.cpu_count()} CPUs, torch threads {args.threads}, Python {platform.python_version()}"
    new = []
    for ecg_id in args.records:
        row = {"label": args.label, "commit": _commit(), **measure(model, ecg_id), "machine": machine,
               "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        print(json.dumps(row))
        new.append(row)
    path = RESULTS / "explain_size.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    rows = [r for r in old if r["label"] != args.label] + new
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"model": "protoecgnet", "rows": rows}, indent=2)
    table = write_tables(rows)
    write_text_atomic(RESULTS / "explain_size.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
