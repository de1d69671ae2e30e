"""``ecglens evaluate``: score a model on a PTB-XL fold or on labelled records of any format, or score
predictions made elsewhere."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ECGError
from ..metrics import evaluate_predictions, format_table, get_or_make_bootstrap
from ..scoring import label_columns, read_table, record_order
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
  predict output  what 'ecglens predict MODEL FILES -o out.csv' (or out.json)
       writes, as written: long rows record,statement,probability,threshold,positive
       are pivoted to one row per record, and the stored thresholds score the calls.
       Its record ids are the paths predict was given; they match a labels file's
       ids exactly or by file name without suffix (A0001 for data/A0001.hea).
  Predictions and labels must cover the same records and the same statements
  (in any order); nothing is dropped silently. Records are scored in sorted id
  order, which is the order --bootstrap indices refer to, so one indices file
  serves every model evaluated on the same test set.

labelled records (MODEL --records DIR):
  any readable format under DIR. Labels: --labels FILE (ids are paths below DIR
  without suffix, A0001 for DIR/A0001.hea), else ptbxl_database.csv when DIR has
  PTB-XL's layout, else each record's SNOMED-CT #Dx codes (challenge format)
  through the package map. Scored on the statements both the model and the labels
  know; unreadable, unlabelled and unjudged records and unmapped SNOMED codes are
  listed in the report's "source".

examples:
  ecglens evaluate runs/protoecgnet --data ptb-xl --fold 10 --bootstrap runs/boot_fold10.npy \\
      --out runs/protoecgnet/eval.json --table
  ecglens evaluate baseline --records external/challenge --table
  ecglens evaluate --predictions preds.csv --labels labels.csv --train-labels train.csv --table
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help=COMMANDS["evaluate"],
        description="Score a trained model on one PTB-XL fold with the model's own label set and\n"
                    "preprocessing, on labelled records of any format (--records), or score predictions\n"
                    "computed elsewhere against labels. Reports macro AUROC over the labels with both\n"
                    "classes (excluded labels are listed), per-label AUROC, sample-centric Fmax, percentile\n"
                    "bootstrap intervals (resamples keep every scored label scorable), Brier score and\n"
                    "expected calibration error, sample F1 and called vs true statements per record at\n"
                    "the stored thresholds, and the training-prevalence baseline (folds 1-8 with --data,\n"
                    "--train-labels with --predictions).",
        epilog=FORMATS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="checkpoint directory (model.safetensors + config.json) or training run")
    p.add_argument("--data", metavar="DIR", help="PTB-XL root (with MODEL)")
    p.add_argument("--records", metavar="DIR", help="labelled records of any format (with MODEL; see below)")
    p.add_argument("--fold", type=int, default=None,
                   help="test fold (default 10 with --data; all folds of a PTB-XL layout with --records)")
    p.add_argument("--rate", type=int, default=100, choices=(100, 500),
                   help="PTB-XL source sampling rate in Hz (default 100)")
    p.add_argument("--cache", metavar="DIR", help="signal cache directory (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    p.add_argument("--batch-size", type=int, default=256, help="records per prediction batch (default 256)")
    p.add_argument("--save-predictions", metavar="CSV", help="with MODEL: also write its predictions (CSV format below)")
    p.add_argument("--predictions", metavar="FILE", help="scores computed elsewhere (.csv or .npz, see below)")
    p.add_argument("--labels", metavar="FILE", help="true labels for --predictions or --records (.csv or .npz)")
    p.add_argument("--train-labels", metavar="FILE",
                   help="training labels for the prevalence baseline with --predictions (with MODEL: folds 1-8)")
    p.add_argument("--bootstrap", metavar="PATH.npy",
                   help="bootstrap resample indices: read if the file exists, else drawn and saved there")
    p.add_argument("--n-resamples", type=int, default=None,
                   help="resamples when drawing new indices (default 1000; with --records drawn even without "
                        "--bootstrap, 0 for none)")
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
        raise ECGError(None, "nothing to evaluate: give MODEL --data DIR, MODEL --records DIR, "
                             "or --predictions FILE --labels FILE")

    if args.out:
        from ..atomic import write_json_atomic

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, report, indent=2)
    if args.table:
        from ..statements import descriptions

        print(format_table(report, descriptions()))
    if args.out:
        print(f"wrote {args.out}: macro AUROC {report['macro_auroc']} over {report['n_scored']} labels, "
              f"{report['excluded']['count']} excluded", file=sys.stderr if args.table else sys.stdout)
    elif not args.table:
        print(json.dumps(report, indent=2))
    return 0


def _from_model(args):
    """Predict a PTB-XL fold (``ecglens.evaluate``) or labelled records (``evaluate_records``) with the
    checkpoint's own label set and pipeline."""
    from ..scoring import evaluate, evaluate_records

    if bool(args.data) == bool(args.records):
        raise ECGError(None, "MODEL needs one of --data DIR (the PTB-XL root) or --records DIR (labelled records)")
    if args.predictions or args.train_labels or (args.labels and not args.records):
        raise ECGError(None, "--predictions/--train-labels go without MODEL; --labels with MODEL needs --records")
    boot = {"bootstrap": args.bootstrap, "n_resamples": args.n_resamples, "seed": args.seed, "alpha": args.alpha,
            "batch_size": args.batch_size, "progress": True}
    if args.data:
        result = evaluate(args.model, args.data, 10 if args.fold is None else args.fold, rate=args.rate,
                          cache_dir=args.cache, **boot)
    else:
        result = evaluate_records(args.model, args.records, labels=args.labels, rate=args.rate,
                                  folds=None if args.fold is None else (args.fold,), **boot)
    if args.save_predictions:
        _write_csv(args.save_predictions, result.records, result.labels, result.y_score)
    return result


def _from_files(args) -> dict:
    """The report on predictions and labels from files (``scoring.read_table``), matched by record id and
    statement name (records in sorted id order, the order bootstrap indices refer to)."""
    if not args.labels:
        raise ECGError(None, "--predictions needs --labels FILE")
    if args.data or args.records or args.save_predictions:
        raise ECGError(None, "--data/--records/--save-predictions need MODEL")
    preds, labels = read_table(args.predictions), read_table(args.labels)
    _same_set(preds.names, labels.names, "statements", args.predictions, args.labels)
    p_records = _matching_ids(preds.records, labels.records)
    _same_set(p_records, labels.records, "records", args.predictions, args.labels)
    row_of = {r: i for i, r in enumerate(labels.records)}
    rows = [row_of[r] for r in p_records]
    y_true = labels.values[rows][:, label_columns(labels.names, preds.names, args.labels)]
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ECGError(args.labels, "labels must be 0 or 1")
    y_train = None
    if args.train_labels:
        train = read_table(args.train_labels)
        y_train = train.values[:, label_columns(train.names, preds.names, args.train_labels)]
        if not np.isin(y_train, (0.0, 1.0)).all():
            raise ECGError(args.train_labels, "labels must be 0 or 1")
    source = {"mode": "predictions", "predictions": str(args.predictions), "labels": str(args.labels),
              "train_labels": None if args.train_labels is None else str(args.train_labels)}
    order = record_order(p_records)
    indices = None
    if args.bootstrap:
        indices = get_or_make_bootstrap(args.bootstrap, len(order), args.n_resamples, args.seed, y_true=y_true[order])
        source["bootstrap_file"] = str(args.bootstrap)
    return {"source": source, **evaluate_predictions(y_true[order], preds.values[order], preds.names, indices,
                                                     y_train, alpha=args.alpha, thresholds=preds.thresholds)}


def _matching_ids(predicted: list[str], labelled: list[str]) -> list[str]:
    """The predictions' record ids, or their file names without suffix when only those match the labels'
    ids (``predict`` writes the paths it was given)."""
    names = [Path(r).stem for r in predicted]
    if set(predicted) != set(labelled) and len(set(names)) == len(names) and set(names) == set(labelled):
        return names
    return predicted


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
