"""``ecglens calibrate MODEL --data DIR -o OUT``: fit calibration, thresholds and assessability on validation."""
from __future__ import annotations

import sys

from . import COMMANDS


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help=COMMANDS["calibrate"],
                              description="Fit per-statement calibration maps (Platt, pooled toward one shared map "
                                          "for statements with few validation positives; or isotonic), operating "
                                          "thresholds and the not-assessable statements on PTB-XL's validation "
                                          "fold, and write the calibrated model to OUT (a new checkpoint "
                                          "directory; the input model is not changed).")
    p.add_argument("model", metavar="MODEL", help="a shipped model name, a checkpoint or a training run directory")
    p.add_argument("--data", required=True, metavar="DIR", help="PTB-XL root")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="directory for the calibrated checkpoint")
    p.add_argument("--fold", type=int, default=9, help="validation fold to fit on (default 9; never the test fold)")
    p.add_argument("--method", choices=("platt", "isotonic"), default="platt",
                   help="calibration map (default platt; isotonic where a statement has 10+ validation positives)")
    p.add_argument("--threshold-rule", default="f1", metavar="RULE",
                   help="f1 (default: best F1), sensitivity:X or specificity:X (e.g. sensitivity:0.9)")
    p.add_argument("--rate", type=int, default=100, choices=(100, 500), help="source sampling rate in Hz (default 100)")
    p.add_argument("--cache", metavar="DIR", help="signal cache directory (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import calibrate

    model = calibrate(args.model, args.data, args.out, fold=args.fold, method=args.method,
                      threshold_rule=args.threshold_rule, rate=args.rate, cache_dir=args.cache, progress=True)
    cal = model.loaded.calibration
    print(f"calibrated {model.name}: {cal.method}, prior sigma {cal.facts['prior_sigma']}, "
          f"{int(cal.assessable.sum())} of {len(cal.labels)} statements assessable; wrote {args.out}",
          file=sys.stderr)
    return 0
