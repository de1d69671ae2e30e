"""``ecglens evaluate``: score a model on a PTB-XL fold, or score predictions made elsewhere."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ECGError
from ..metrics import evaluate_predictions, format_table, get_or_make_bootstrap
from ..scoring import label_columns
from . import COMMANDS

FORMATS = """\
file formats (--predictions, --labels, --train-labels):
  CSV  a header row; the first column is named "record" (the record id, e.g. the
       PTB-XL ecg_id), then one column per statement, named by its code. Each
       row is one record. Predictions hold scores (higher = more likely, e.g.
       probabilities); labels hold 0 or 1.
         record,AFIB,NORM,STTC
         9001,0.12,0.80,0.05
  NPZ  numpy .npz with arrays "record" (n,), "label_names" (k,) and "values" (n, k).
  Predictions and labels must cover the same records and the same statements
  (in any order); nothing is dropped silently. Records are scored in sorted id
  order, which is the order --bootstrap indices refer to, so one indices file
  serves every model evaluated on the same test set.

examples:
  ecglens evaluate runs/protoecgnet --data ptb-xl --fold 10 --bootstrap runs/boot_fold10.npy \\
      --out runs/protoecgnet/eval.json --table
  ecglens evaluate --predictions preds.csv --labels labels.csv --train-labels train.csv --table
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help=COMMANDS["evaluate"],
        description="Score a trained model on one PTB-XL fold with the model's own label set and\n"
                    "preprocessing, or score predictions computed elsewhere against labels. Reports\n"
                    "macro AUROC over the labels with both classes (excluded labels are listed),\n"
                    "per-label AUROC, sample-centric Fmax, a percentile bootstrap interval and the\n"
                    "training-prevalence baseline (folds 1-8 with MODEL, --train-labels otherwise).",
        epilog=FORMATS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="checkpoint directory (model.safetensors + config.json) or training run")
    p.add_argument("--data", metavar="DIR", help="PTB-XL root (with MODEL)")
    p.add_argument("--fold", type=int, default=10, help="test fold (default 10)")
    p.add_argument("--rate", type=int, default=100, choices=(100, 500), help="source sampling rate in Hz (default 100)")
    p.add_argument("--cache", metavar="DIR", help="signal cache directory (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    p.add_argument("--batch-size", type=int, default=256, help="records per prediction batch (default 256)")
    p.add_argument("--save-predictions", metavar="CSV", help="with MODEL: also write its predictions (CSV format below)")
    p.add_argument("--predictions", metavar="FILE", help="scores computed elsewhere (.csv or .npz, see below)")
    p.add_argument("--labels", metavar="FILE", help="true labels for --predictions (.csv or .npz)")
    p.add_argument("--train-labels", metavar="FILE",
                   help="training labels for the prevalence baseline with --predictions (with MODEL: folds 1-8)")
    p.add_argument("--bootstrap", metavar="PATH.npy",
                   help="bootstrap resample indices: read if the file exists, else drawn and saved there")
    p.add_argument("--n-resamples", type=int, default=None, help="resamples when drawing new indices (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed when drawing new indices (default 0)")
    p.add_argument("--alpha", type=float, default=0.90, help="central mass of the bootstrap interval (default 0.90)")
    p.add_argument("--out", metavar="report.json", help="write the JSON report here")
    p.add_argument("--table", action="store_true", help="print a readable table")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.model and args.predictions:
        raise ECGError(None, "give either MODEL or --predictions, not both")
    if args.model:
        report = _from_model(args).to_dict()
    elif args.predictions:
        report = _from_files(args)
    else:
        raise ECGError(None, "nothing to evaluate: give MODEL --data DIR, or --predictions FILE --labels FILE")

    if args.out:
        from ..atomic import write_json_atomic

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, report, indent=2)
    if args.table:
        print(format_table(report))
    if args.out:
        print(f"wrote {args.out}: macro AUROC {report['macro_auroc']} over {report['n_scored']} labels, "
              f"{report['excluded']['count']} excluded", file=sys.stderr if args.table else sys.stdout)
    elif not args.table:
        print(json.dumps(report, indent=2))
    return 0


def _from_model(args):
    """Predict the fold with the checkpoint's own label set and pipeline (``ecglens.evaluate``)."""
    from ..scoring import evaluate

    if not args.data:
        raise ECGError(None, "MODEL needs --data DIR (the PTB-XL root)")
    if args.predictions or args.labels or args.train_labels:
        raise ECGError(None, "--predictions/--labels/--train-labels go without MODEL")
    result = evaluate(args.model, args.data, args.fold, rate=args.rate, cache_dir=args.cache,
                      bootstrap=args.bootstrap, n_resamples=args.n_resamples, seed=args.seed, alpha=args.alpha,
                      batch_size=args.batch_size, progress=True)
    if args.save_predictions:
        _write_csv(args.save_predictions, result.records, result.labels, result.y_score)
    return result


def _from_files(args) -> dict:
    """The report on predictions and labels from CSV/NPZ files, matched by record id and statement name
    (records in sorted id order, the order bootstrap indices refer to)."""
    if not args.labels:
        raise ECGError(None, "--predictions needs --labels FILE")
    if args.data or args.save_predictions:
        raise ECGError(None, "--data/--save-predictions need MODEL")
    p_records, p_names, p_values = read_table(args.predictions)
    l_records, l_names, l_values = read_table(args.labels)
    _same_set(p_names, l_names, "statements", args.predictions, args.labels)
    _same_set(p_records, l_records, "records", args.predictions, args.labels)
    row_of = {r: i for i, r in enumerate(l_records)}
    rows = [row_of[r] for r in p_records]
    y_true = l_values[rows][:, label_columns(l_names, p_names, args.labels)]
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ECGError(args.labels, "labels must be 0 or 1")
    y_train = None
    if args.train_labels:
        _, t_names, t_values = read_table(args.train_labels)
        y_train = t_values[:, label_columns(t_names, p_names, args.train_labels)]
        if not np.isin(y_train, (0.0, 1.0)).all():
            raise ECGError(args.train_labels, "labels must be 0 or 1")
    source = {"mode": "predictions", "predictions": str(args.predictions), "labels": str(args.labels),
              "train_labels": None if args.train_labels is None else str(args.train_labels)}
    order = _record_order(p_records)
    indices = None
    if args.bootstrap:
        indices = get_or_make_bootstrap(args.bootstrap, len(order), args.n_resamples, args.seed)
        source["bootstrap_file"] = str(args.bootstrap)
    return {"source": source, **evaluate_predictions(y_true[order], p_values[order], p_names, indices, y_train,
                                                     alpha=args.alpha)}


def read_table(path) -> tuple[list[str], list[str], np.ndarray]:
    """(record ids, statement names, (n, k) float64 values) from a CSV or NPZ file (formats in the help)."""
    path = Path(path)
    if not path.is_file():
        raise ECGError(path, "no such file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = {"record", "label_names", "values"} - set(z.files)
                if missing:
                    raise ECGError(path, f"missing array(s) {sorted(missing)}; need record, label_names, values")
                records, names, values = z["record"], z["label_names"], z["values"]
        except (OSError, ValueError) as exc:
            raise ECGError(path, f"cannot read npz: {exc}") from exc
        records, names = [str(r) for r in records.ravel()], [str(n) for n in names.ravel()]
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ECGError(path, f"values are not numeric: {exc}") from exc
    elif path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, dtype={"record": str})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise ECGError(path, f"cannot read csv: {exc}") from exc
        if not len(frame.columns) or frame.columns[0] != "record":
            raise ECGError(path, "the first column must be named 'record'")
        records, names = frame["record"].astype(str).tolist(), [str(c) for c in frame.columns[1:]]
        bad = [c for c in frame.columns[1:] if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ECGError(path, f"non-numeric values in column(s) {bad[:5]}")
        values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    else:
        raise ECGError(path, "expected a .csv or .npz file")
    if values.ndim != 2 or values.shape != (len(records), len(names)) or not names or not records:
        raise ECGError(path, f"values shaped {values.shape} for {len(records)} records and {len(names)} statements")
    if not np.isfinite(values).all():
        raise ECGError(path, f"{int((~np.isfinite(values)).sum())} empty, NaN or infinite values")
    for what, items in (("record", records), ("statement", names)):
        dupes = sorted(x for x, c in Counter(items).items() if c > 1)
        if dupes:
            raise ECGError(path, f"repeated {what} id(s): {dupes[:5]}")
    return records, names, values


def _write_csv(path, records, names, values) -> None:
    from ..atomic import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, "record", records)
    write_text_atomic(path, frame.to_csv(index=False))


def _same_set(a: list[str], b: list[str], what: str, path_a, path_b) -> None:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise ECGError(path_a, f"{what} differ from {path_b}: {len(only_a)} only here {only_a[:5]}, "
                               f"{len(only_b)} only there {only_b[:5]}")


def _record_order(records: list[str]) -> np.ndarray:
    """Indices sorting record ids numerically when all are integers, else as text."""
    try:
        keys = [int(r) for r in records]
    except ValueError:
        keys = records
    return np.asarray(sorted(range(len(records)), key=keys.__getitem__), dtype=np.int64)
