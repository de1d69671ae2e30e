"""``ecglens predict-batch``: predict many files into resumable Parquet parts, locally, on Dask or on Ray."""
from __future__ import annotations

import sys

from ..errors import ECGError
from . import COMMANDS

SHOWN_FAILURES = 20  # failures listed on stderr; the manifest lists all


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict-batch", help=COMMANDS["predict-batch"],
        description="Score every record under the inputs with a model. The sorted inputs are cut into parts of "
                    "--part-size; each part becomes OUTDIR/part-NNNNNN.parquet (record, one probability column per "
                    "statement, called statements, quality, problem) and OUTDIR/manifest.json lists every part. "
                    "A re-run skips finished parts, so a killed run resumes. Unreadable or unjudged files keep "
                    "their row with a problem; they are counted on stderr (exit status 2).")
    p.add_argument("model", metavar="MODEL", help="a shipped model name or a checkpoint directory")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="ECG files or directories")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output directory (parts + manifest.json)")
    p.add_argument("--engine", choices=("local", "dask", "ray"), default="local",
                   help="local: this process (default); dask: dask.distributed; ray: Ray Data (needs ray)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (dask) or actors (ray) started here when no --scheduler is given (default 1)")
    p.add_argument("--part-size", type=int, default=256, help="records per part (default 256)")
    p.add_argument("--shard", metavar="K/N", help="do only shard K of N (every N-th part, K in 1..N) for job arrays")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler (tcp://host:port) or Ray cluster address to use")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..batch import parse_shard, run_batch

    if args.scheduler and args.engine == "local":
        raise ECGError(None, "--scheduler needs --engine dask or ray")
    shard = parse_shard(args.shard) if args.shard else None
    result = run_batch(args.model, args.inputs, args.out, engine=args.engine, workers=args.workers,
                       part_size=args.part_size, shard=shard, scheduler=args.scheduler, progress=not args.no_progress)
    print(f"{result.parts_run} part(s) written, {result.parts_skipped} already finished, "
          f"{result.parts_in_shard} of {result.parts_total} in this shard; {result.rows} record(s) -> {args.out}",
          file=sys.stderr)
    if result.failures:
        for failure in result.failures[:SHOWN_FAILURES]:
            print(f"  {failure['record']}: {failure['problem']}", file=sys.stderr)
        if len(result.failures) > SHOWN_FAILURES:
            print(f"  ... and {len(result.failures) - SHOWN_FAILURES} more", file=sys.stderr)
        print(f"ecglens: error: {len(result.failures)} of {result.rows} file(s) could not be read or judged "
              f"(rows with a problem; listed in {result.manifest})", file=sys.stderr)
        return 2
    return 0
