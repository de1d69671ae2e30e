"""``ecglens predict``: statement probabilities for ECG files with a trained model."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ECGError
from ..models.prediction import Prediction
from ..statements import describe
from . import COMMANDS

RATELESS_SUFFIXES = (".csv", ".npy")
TABLE_TOP = 5


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help=COMMANDS["predict"],
        description="Score ECG records of any format and sampling rate with a trained model; the model's "
                    "stored preprocessing adapts each record. Directories are searched for records. "
                    "Files that cannot be read are listed and counted on stderr (exit status 2); "
                    "the others are still scored.")
    p.add_argument("model", metavar="MODEL",
                   help="a shipped model name (ecglens models), a checkpoint directory or a training run directory")
    p.add_argument("files", nargs="+", metavar="FILE|DIR", help="ECG files or directories")
    p.add_argument("-o", "--out", metavar="OUT.csv|OUT.json",
                   help="write rows (record, statement, probability, threshold, positive) as CSV or JSON; "
                        "without it a table of the most probable statements is printed")
    p.add_argument("--rate", type=float, metavar="HZ", help="sampling rate of .csv/.npy files (they carry none)")
    p.add_argument("--units", choices=("uV", "mV", "V"), default=None,
                   help="unit of .csv/.npy values, which those files cannot state (default mV); other formats state their own")
    p.add_argument("--threshold", type=float, default=None,
                   help="call every statement positive at this probability (default: the model's stored "
                        "per-statement thresholds)")
    p.add_argument("--top", type=int, metavar="N",
                   help=f"keep the N most probable statements per record (default: all in files, {TABLE_TOP} in the table)")
    p.add_argument("--batch-size", type=int, default=64, help="records read and scored together (default 64)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="run the network through PyTorch (default) or onnxruntime")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _expand(names: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    from ..io import find_records

    found, failed = [], []
    for name in names:
        # a bare WFDB record name (``.../00001_lr``) is a record although no file has that name
        if Path(f"{name}.hea").is_file() and not Path(name).exists():
            found.append(Path(name))
            continue
        try:
            paths = find_records(name)
            if not paths:
                raise ECGError(name, "no ECG records found in this directory")
            found.extend(paths)
        except ECGError as exc:
            failed.append((name, exc.problem))
    return found, failed


def predict_files(model, paths: list[Path], rate: float | None = None, batch_size: int = 64,
                  progress: bool = True, units: str | None = None) -> tuple[Prediction, list[tuple[str, str]]]:
    """``(prediction, failed)`` for files, read and scored ``batch_size`` at a time; a file that cannot be
    read or judged is listed in ``failed`` with its problem. ``rate`` and ``units`` apply to .csv/.npy files."""
    from ..io import read_ecg

    parts, failed = [], []
    with tqdm(total=len(paths), desc="predict", unit="rec", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            ecgs = []
            for path in paths[start:start + batch_size]:
                try:
                    rateless = path.suffix.lower() in RATELESS_SUFFIXES
                    if rateless and rate is None:
                        raise ECGError(path, f"{path.suffix} files carry no sampling rate; pass --rate HZ")
                    ecgs.append(read_ecg(path, sampling_rate=rate if rateless else None, units=units if rateless else None))
                except Exception as exc:  # every failure is reported and counted, whatever raised it
                    failed.append((str(path), exc.problem if isinstance(exc, ECGError) else f"{type(exc).__name__}: {exc}"))
            if ecgs:
                part = model.predict(ecgs, on_error="skip")
                failed += [(part.records[i], why) for i, why in part.skipped]
                skipped = {i for i, _ in part.skipped}
                parts.append(part.select([i for i in range(len(part)) if i not in skipped]))
            bar.update(min(batch_size, len(paths) - start))
    if not parts:
        return model.predict([]), failed
    return Prediction.concat(parts), failed


def _keep_top(prediction: Prediction, top: int | None) -> list[list[tuple[str, float, bool]]]:
    """Per record its statements (the ``top`` most probable, or all) with probability and call."""
    k = top or len(prediction.labels)
    column = {s: j for j, s in enumerate(prediction.labels)}
    calls = prediction.calls
    return [[(s, p, bool(calls[i, column[s]])) for s, p in prediction.top(i, k)] for i in range(len(prediction))]


def run(args) -> int:
    from ..api import load_model

    if args.batch_size < 1:
        raise ECGError(None, f"--batch-size must be at least 1, got {args.batch_size}")
    if args.top is not None and args.top < 1:
        raise ECGError(None, f"--top must be at least 1, got {args.top}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ECGError(None, f"--threshold must be a probability in [0, 1], got {args.threshold}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise ECGError(out, "output must end in .csv or .json")
    model = load_model(args.model, runtime=args.runtime)
    paths, failed = _expand(args.files)
    prediction, unreadable = predict_files(model, paths, args.rate, args.batch_size, progress=not args.no_progress,
                                           units=args.units)
    failed += unreadable
    if args.threshold is not None:
        prediction.thresholds = np.full(len(prediction.labels), args.threshold)

    unjudged = [(r, q["flags"]) for r, q in zip(prediction.records, prediction.quality or ()) if not q["judgeable"]]
    if out is None:
        _print_table(prediction, _keep_top(prediction, args.top or TABLE_TOP))
    else:
        _write(out, model, prediction, _keep_top(prediction, args.top), failed)
        print(f"{len(prediction)} record(s) scored -> {out}", file=sys.stderr)

    if unjudged:
        print(f"{len(unjudged)} record(s) not judgeable, so nothing was called for them:", file=sys.stderr)
        for rec, flags in unjudged:
            print(f"  {rec}: {', '.join(flags)}", file=sys.stderr)
    if failed:
        for path, why in failed:
            print(f"  {path}: {why}", file=sys.stderr)
        total = len(prediction) + len(failed)
        print(f"ecglens: error: {len(failed)} of {total} file{'' if total == 1 else 's'} could not be read or judged",
              file=sys.stderr)
        return 2
    return 0


def _write(out: Path, model, prediction: Prediction, rows, failed) -> None:
    """The rows as CSV (record, statement, probability, threshold, positive) or JSON, written atomically."""
    from ..atomic import atomic_write

    threshold = dict(zip(prediction.labels, prediction.thresholds))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as fh:
        if out.suffix.lower() == ".csv":
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["record", "statement", "probability", "threshold", "positive"])
            for rec, items in zip(prediction.records, rows):
                for stmt, p, call in items:
                    w.writerow([rec, stmt, f"{p:.6f}", f"{threshold[stmt]:.6f}", int(call)])
        else:
            doc = {"model": str(model.directory), "kind": model.kind.name, "label_set": model.config.get("label_set"),
                   "thresholds": {s: float(t) for s, t in threshold.items()},
                   "not_assessable": [s for s, ok in zip(prediction.labels, prediction.assessable) if not ok],
                   "records": [{"record": rec, "quality": quality,
                                "predictions": [{"statement": s, "description": describe(s),
                                                 "probability": round(p, 6), "positive": call}
                                                for s, p, call in items]}
                               for rec, items, quality in zip(prediction.records, rows,
                                                              prediction.quality or [None] * len(rows))],
                   "skipped": {"count": len(failed), "files": [{"path": f, "problem": why} for f, why in failed]}}
            fh.write(json.dumps(doc, indent=2) + "\n")


def _print_table(prediction: Prediction, rows) -> None:
    records = prediction.records
    for i, (rec, items) in enumerate(zip(records, rows)):
        quality = (prediction.quality or [None] * len(records))[i]
        print(rec if quality is None or quality["judgeable"]
              else f"{rec}  NOT JUDGEABLE ({', '.join(quality['flags'])}): nothing called")
        for stmt, p, call in items:
            print(f"  {stmt:<10} {p:6.3f} {'*' if call else ' '}  {describe(stmt)}".rstrip())
    if records:
        print("(* called: probability at or above the statement's threshold)")
