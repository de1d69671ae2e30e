"""``ecglens explain FILE --model M``: why a model said what it said about one record."""
from __future__ import annotations

import sys
from pathlib import Path

from . import COMMANDS


def register(subparsers) -> None:
    from ..explain import DEFAULT_LIMIT, DEFAULT_TOP, explainer_modules

    p = subparsers.add_parser("explain", help=COMMANDS["explain"],
                              description="Explain a model's output for one record: by default the statements "
                                          "it calls at its stored thresholds. Writes explanation.json and the "
                                          "figures into --out (replacing an earlier explanation's files there).")
    p.add_argument("file", help="any readable record")
    p.add_argument("--model", required=True,
                   help="a checkpoint directory, a training run, or a shipped model name (e.g. protoecgnet)")
    p.add_argument("--out", default="runs/explain", help="output directory for the JSON and figures")
    p.add_argument("--rate", type=float, help="sampling rate, needed for .csv/.npy")
    p.add_argument("--units", choices=("uV", "mV", "V"), default=None,
                   help="unit of .csv/.npy values, which those files cannot state (default mV)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"evidence items per statement (default {DEFAULT_TOP})")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help=f"explain at most this many statements: those asked for with --statement, then the most "
                        f"probable called ones (default {DEFAULT_LIMIT}; 0: no limit)")
    p.add_argument("--all-figures", action="store_true",
                   help="draw figures for every explained statement (default: the called and asked-for ones)")
    p.add_argument("--threshold", type=float, default=None,
                   help="explain statements at or above this probability (default: the model's stored thresholds)")
    p.add_argument("--statement", action="append", default=[],
                   help="explain this statement whatever its probability (repeatable)")
    p.add_argument("--no-figures", action="store_true", help="write the JSON only")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while drawing figures")
    for module in explainer_modules():
        if hasattr(module, "add_arguments"):
            module.add_arguments(p.add_argument_group(module.__name__.rsplit(".", 1)[-1]))
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import load_model
    from ..io import read_ecg

    model = load_model(args.model)
    ecg = read_ecg(args.file, sampling_rate=args.rate, units=args.units)
    options = {k: v for k, v in vars(args).items() if k.startswith(f"{model.kind.name}_")}
    explanation = model.explain(ecg, statements=args.statement, top=args.top, threshold=args.threshold,
                                limit=args.limit or None, all_figures=args.all_figures, **options)
    out = Path(args.out)
    explanation.save(out, figures=not args.no_figures, progress=not args.no_progress)
    print(explanation.to_json() if args.json else explanation.text)
    print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0
