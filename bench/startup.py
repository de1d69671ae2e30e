"""Benchmark: how long the CLI takes to answer, against a bare Python start.

Runs, in one process and alternating so load drifts hit every command alike,
``python -c pass``, ``ecglens --help``, ``ecglens --version`` and ``ecglens read
FILE`` (a bundled WFDB sample) ``--repeats`` times each, and reports the median
wall time and its excess over the bare start (target: at most 0.5 s more), plus
whether torch was imported (it must not be).

    .venv/bin/python bench/startup.py [--repeats 15]

Writes bench/results/startup.json and bench/results/startup.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TARGET_EXCESS_S = 0.5
SAMPLE = REPO / "src" / "ecglens" / "samples" / "records100" / "00000" / "00172_lr.hea"
# every command also reports whether torch got imported on the way
PROBE = "import sys, runpy; sys.argv = {argv!r}; code = 0\n" \
        "try:\n    runpy.run_module('ecglens', run_name='__main__')\n" \
        "except SystemExit as e:\n    code = e.code or 0\n" \
        "sys.stderr.write('TORCH=%d\\n' % ('torch' in sys.modules)); sys.exit(code)\n"
COMMANDS = {
    "python -c pass": None,
    "ecglens --help": ["ecglens", "--help"],
    "ecglens --version": ["ecglens", "--version"],
    "ecglens read FILE": ["ecglens", "read", str(SAMPLE)],
}


def run_once(argv: list[str] | None) -> tuple[float, bool | None]:
    """Wall seconds of one start, and whether torch was imported (None for the bare start)."""
    cmd = [sys.executable, "-c", "pass" if argv is None else PROBE.format(argv=argv)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    return wall, None if argv is None else "TORCH=1" in done.stderr


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=15, help="starts per command (default 15)")
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    torch_seen: dict[str, bool] = {}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            wall, torch = run_once(cmd)
            times[name].append(wall)
            if torch is not None:
                torch_seen[name] = torch_seen.get(name, False) or torch
    bare = statistics.median(times["python -c pass"])
    rows = []
    for name, walls in times.items():
        median = statistics.median(walls)
        rows.append({"command": name, "median_s": median, "min_s": min(walls), "max_s": max(walls),
                     "excess_over_bare_s": median - bare, "imports_torch": torch_seen.get(name),
                     "meets_target": None if name == "python -c pass" else median - bare <= TARGET_EXCESS_S})
    result = {"target_excess_s": TARGET_EXCESS_S, "repeats": args.repeats, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": list(os.getloadavg())},
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# CLI start-up", "", f"Median of {args.repeats} starts each, alternating; target: at most "
             f"{TARGET_EXCESS_S} s over a bare `python -c pass`. Written by `bench/startup.py`.", "",
             "| command | median s | min s | max s | over bare s | imports torch | target met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | "
                     f"{r['excess_over_bare_s']:.3f} | {'-' if r['imports_torch'] is None else r['imports_torch']} | "
                     f"{'-' if r['meets_target'] is None else r['meets_target']} |")
    lines += ["", f"Load average at the end: {', '.join(f'{v:.2f}' for v in result['machine']['load_average'])} "
              f"on {result['machine']['cpus']} CPUs."]
    (RESULTS / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
