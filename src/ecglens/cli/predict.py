"""``ecglens predict``: statement probabilities for ECG files with a trained model."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ECGError

RATELESS_SUFFIXES = (".csv", ".npy")
TABLE_TOP = 5


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="statement probabilities for ECG files with a trained model",
        description="Score ECG records of any format and sampling rate with a trained model; the model's "
                    "stored preprocessing adapts each record. Directories are searched for records. "
                    "Files that cannot be read are listed and counted on stderr (exit status 2); "
                    "the others are still scored.")
    p.add_argument("model", metavar="MODEL", help="checkpoint directory (or a training run directory holding model/)")
    p.add_argument("files", nargs="+", metavar="FILE|DIR", help="ECG files or directories")
    p.add_argument("-o", "--out", metavar="OUT.csv|OUT.json",
                   help="write rows (record, statement, probability, positive) as CSV or JSON; "
                        "without it a table of the most probable statements is printed")
    p.add_argument("--rate", type=float, metavar="HZ", help="sampling rate of .csv/.npy files (they carry none)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability at which a statement counts as positive (default 0.5)")
    p.add_argument("--top", type=int, metavar="N",
                   help=f"keep the N most probable statements per record (default: all in files, {TABLE_TOP} in the table)")
    p.add_argument("--batch-size", type=int, default=64, help="records read and scored together (default 64)")
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


def predict_files(clf, paths: list[Path], rate: float | None = None, batch_size: int = 64,
                  progress: bool = True) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """``(records, (n, k) probabilities, failed)`` for files, read and scored ``batch_size`` at a time."""
    from ..io import read_ecg

    records, scores, failed = [], [], []
    with tqdm(total=len(paths), desc="predict", unit="rec", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            inputs, names = [], []
            for path in paths[start:start + batch_size]:
                try:
                    rateless = path.suffix.lower() in RATELESS_SUFFIXES
                    if rateless and rate is None:
                        raise ECGError(path, f"{path.suffix} files carry no sampling rate; pass --rate HZ")
                    inputs.append(clf.preprocess(read_ecg(path, sampling_rate=rate if rateless else None)))
                    names.append(str(path))
                except Exception as exc:  # every failure is reported and counted, whatever raised it
                    failed.append((str(path), exc.problem if isinstance(exc, ECGError) else f"{type(exc).__name__}: {exc}"))
            if inputs:
                scores.append(clf.predict_inputs(inputs))
                records.extend(names)
            bar.update(min(batch_size, len(paths) - start))
    probs = np.concatenate(scores) if scores else np.zeros((0, len(clf.labels)))
    return records, probs, failed


def _rows(labels: list[str], probs: np.ndarray, top: int | None) -> list[list[tuple[str, float]]]:
    out = []
    for p in probs:
        order = np.argsort(-p, kind="stable")[:top] if top else range(len(labels))
        out.append([(labels[j], float(p[j])) for j in order])
    return out


def run(args) -> int:
    from ..models import load_classifier, resolve_checkpoint

    if args.batch_size < 1:
        raise ECGError(None, f"--batch-size must be at least 1, got {args.batch_size}")
    if args.top is not None and args.top < 1:
        raise ECGError(None, f"--top must be at least 1, got {args.top}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise ECGError(out, "output must end in .csv or .json")
    clf = load_classifier(args.model)
    paths, failed = _expand(args.files)
    records, probs, unreadable = predict_files(clf, paths, args.rate, args.batch_size, progress=not args.no_progress)
    failed += unreadable

    if out is None:
        _print_table(records, _rows(clf.labels, probs, args.top or TABLE_TOP), args.threshold)
    else:
        rows = _rows(clf.labels, probs, args.top)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            with open(out, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["record", "statement", "probability", "positive"])
                for rec, pairs in zip(records, rows):
                    for stmt, p in pairs:
                        w.writerow([rec, stmt, f"{p:.6f}", int(p >= args.threshold)])
        else:
            doc = {
                "model": str(resolve_checkpoint(args.model)), "kind": clf.config.get("kind"),
                "label_set": clf.config.get("label_set"), "threshold": args.threshold,
                "records": [{"record": rec, "predictions": [{"statement": s, "probability": round(p, 6),
                                                             "positive": p >= args.threshold} for s, p in pairs]}
                            for rec, pairs in zip(records, rows)],
                "skipped": {"count": len(failed), "files": [{"path": f, "problem": why} for f, why in failed]},
            }
            out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"{len(records)} record(s) scored -> {out}", file=sys.stderr)

    if failed:
        for path, why in failed:
            print(f"  {path}: {why}", file=sys.stderr)
        total = len(records) + len(failed)
        print(f"ecglens: error: {len(failed)} of {total} file{'' if total == 1 else 's'} could not be read",
              file=sys.stderr)
        return 2
    return 0


def _print_table(records: list[str], rows: list[list[tuple[str, float]]], threshold: float) -> None:
    for rec, pairs in zip(records, rows):
        print(rec)
        for stmt, p in pairs:
            print(f"  {stmt:<10} {p:6.3f}{'  *' if p >= threshold else ''}")
    if records:
        print(f"(* probability >= {threshold:g})")
