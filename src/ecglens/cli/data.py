"""``ecglens data``: download, verify, describe and cache PTB-XL.

    ecglens data download ptb-xl DIR [--base-url URL] [--only-rate 100|500]
    ecglens data verify DIR
    ecglens data info DIR [--rate 100] [--json]
    ecglens data cache DIR --rate 100 [--cache DIR] [--label-set all] [--pipeline FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ECGError
from . import COMMANDS

DATASETS = ("ptb-xl",)
SPLITS = {"train": (1, 2, 3, 4, 5, 6, 7, 8), "val": (9,), "test": (10,)}


def _download(args) -> int:
    from ..datasets.download import download_ptbxl

    skip = {100: "records500/", 500: "records100/"}.get(args.only_rate)
    files = (lambda rel: not rel.startswith(skip)) if skip else None
    report = download_ptbxl(args.dir, base_url=args.base_url, files=files, progress=not args.quiet)
    print(f"{report['dest']}: {report['downloaded']} downloaded, {report['skipped_existing']} already present "
          f"and verified, {len(report['failed'])} failed (of {report['total']}), {len(report['refused'])} "
          "unsafe name(s) in the checksum list refused")
    for item in report["failed"]:
        print(f"  FAILED {item['path']}: {item['reason']}", file=sys.stderr)
    _print_refused(report["refused"])
    return 1 if report["failed"] or report["refused"] else 0


def _print_refused(refused: list[dict]) -> None:
    for item in refused:
        print(f"  REFUSED line {item['line']} {item['path']!r}: {item['reason']}", file=sys.stderr)


def _verify(args) -> int:
    from ..datasets.download import verify_dir

    report = verify_dir(args.dir, progress=not args.quiet)
    print(f"{report['directory']}: {report['ok']} of {report['checked']} files ok, "
          f"{len(report['missing'])} missing, {len(report['mismatched'])} with a wrong sha256, "
          f"{len(report['refused'])} unsafe name(s) refused")
    for rel in report["missing"]:
        print(f"  MISSING {rel}", file=sys.stderr)
    for rel in report["mismatched"]:
        print(f"  MISMATCH {rel}", file=sys.stderr)
    _print_refused(report["refused"])
    return 0 if report["passed"] else 1


def _info(args) -> int:
    from ..datasets.ptbxl import PTBXL

    summary = PTBXL(args.dir, sampling_rate=args.rate).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"PTB-XL at {summary['root']} ({summary['sampling_rate']} Hz): {summary['records']} of "
          f"{summary['listed']} listed records available")
    print("  per fold: " + ", ".join(f"{f}: {n}" for f, n in summary["per_fold"].items()))
    print("  per rate: " + ", ".join(f"{r} Hz: {n}" for r, n in summary["per_rate"].items()))
    missing = summary["missing"]
    if missing["count"]:
        shown = ", ".join(str(i) for i in missing["ecg_ids"][:10])
        print(f"  missing at {summary['sampling_rate']} Hz: {missing['count']} (ecg_id {shown}"
              f"{', ...' if missing['count'] > 10 else ''}; --json lists all)")
    print("  label sets (vocabulary / present / records kept / dropped):")
    for name, s in summary["label_sets"].items():
        print(f"    {name:<16} {s['vocabulary']:>3} {s['labels_present']:>4} {s['records_kept']:>7} {s['records_dropped']:>7}")
    return 0


def _cache(args) -> int:
    from ..datasets.cache import cache_size_bytes
    from ..datasets.ptbxl import PTBXL
    from ..preprocess import Pipeline

    pipeline = Pipeline()
    if args.pipeline:
        try:
            pipeline = Pipeline.from_dict(json.loads(Path(args.pipeline).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ECGError(args.pipeline, f"not a pipeline JSON file ({exc})") from exc
    ds = PTBXL(args.dir, sampling_rate=args.rate)
    failed = 0
    for split, folds in SPLITS.items():
        data = ds.load(args.label_set, folds=folds, pipeline=pipeline, cache_dir=args.cache, progress=not args.quiet)
        directory = Path(data.signals.filename).parent
        print(f"{split} (folds {','.join(map(str, folds))}): {len(data.ecg_ids)} records {tuple(data.signals.shape)} "
              f"-> {directory} ({cache_size_bytes(directory) / 2**20:.1f} MiB)")
        for ecg_id, reason in data.skipped:
            print(f"  SKIPPED {ecg_id}: {reason}", file=sys.stderr)
        failed += len(data.skipped)
    return 1 if failed else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help=COMMANDS["data"],
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = sub.add_parser("download", help="download a dataset from PhysioNet, verified against SHA256SUMS.txt")
    p.add_argument("dataset", choices=DATASETS, help="the dataset to fetch")
    p.add_argument("dir", help="destination directory")
    p.add_argument("--base-url", default="https://physionet.org/files/ptb-xl/1.0.3/",
                   help="where the files are served (default: PhysioNet's PTB-XL 1.0.3)")
    p.add_argument("--only-rate", type=int, choices=(100, 500), help="fetch only the records at this rate")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_download)

    p = sub.add_parser("verify", help="check every file listed in DIR/SHA256SUMS.txt")
    p.add_argument("dir", help="the local copy to check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_verify)

    p = sub.add_parser("info", help="records per fold and rate, missing records, label-set sizes")
    p.add_argument("dir", help="PTB-XL root")
    p.add_argument("--rate", type=int, default=100, choices=(100, 500), help="source sampling rate in Hz (default 100)")
    p.add_argument("--json", action="store_true", help="print the full summary as JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser("cache", help="build the signal cache of the train/val/test splits")
    p.add_argument("dir", help="PTB-XL root")
    p.add_argument("--rate", type=int, default=100, choices=(100, 500), help="source sampling rate in Hz (default 100)")
    p.add_argument("--cache", default=None, help="cache root (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    p.add_argument("--label-set", default="all", help="label set whose unlabelled records are left out (default all)")
    p.add_argument("--pipeline", default=None, help="preprocessing pipeline JSON (Pipeline.to_dict); default none")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cache)
