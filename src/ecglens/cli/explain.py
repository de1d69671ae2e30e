"""``ecglens explain FILE --model M``: why a model said what it said about one record."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from ..explain import EXPLAINERS, ExplainOptions, explainer_for
from ..io import read_ecg
from ..models import resolve_checkpoint
from ..training.checkpoint import load_config


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="explain a model's output for one record (JSON + figures)")
    p.add_argument("file", help="any readable record")
    p.add_argument("--model", required=True,
                   help="a checkpoint directory, a training run, or a shipped model name (e.g. protoecgnet)")
    p.add_argument("--out", default="runs/explain", help="output directory for the JSON and figures")
    p.add_argument("--rate", type=float, help="sampling rate, needed for .csv/.npy")
    p.add_argument("--top", type=int, default=3, help="evidence items per statement (default 3)")
    p.add_argument("--threshold", type=float, default=0.5, help="explain statements at or above this probability")
    p.add_argument("--statement", action="append", default=[],
                   help="explain this statement whatever its probability (repeatable)")
    p.add_argument("--no-figures", action="store_true", help="write the JSON only")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    for module in sorted(set(EXPLAINERS.values())):
        mod = importlib.import_module(module)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p.add_argument_group(module.rsplit(".", 1)[-1]))
    p.set_defaults(func=run)


def run(args) -> int:
    model_dir = resolve_checkpoint(args.model)
    kind = load_config(model_dir).get("kind")
    explainer = explainer_for(kind)
    ecg = read_ecg(args.file, sampling_rate=args.rate)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = ExplainOptions(top=args.top, threshold=args.threshold, statements=tuple(args.statement),
                             figures=not args.no_figures, extra=vars(args))
    result = explainer.explain(model_dir, ecg, out, options)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(explainer.format_text(result) if hasattr(explainer, "format_text") else json.dumps(result, indent=2, default=str))
        print(f"wrote {out}")
    return 0
