"""``ecglens demo``: the main job end to end on the bundled records and the shipped models."""
from __future__ import annotations

import json
from pathlib import Path

from ..explain import EXPLAINERS, ExplainOptions, explainer_for
from ..models import LOADERS, load_classifier
from ..preprocess import Bandpass, FixLength, Pipeline, Resample
from ..pretrained import list_pretrained, pretrained_dir
from ..samples import list_samples, load_sample
from ..training.checkpoint import load_config
from ..viz import plot_ecg

# What the demo shows of each record before any model: a typical model-input pipeline.
DEMO_PIPELINE = Pipeline((Resample(100), Bandpass(0.5, 40.0), FixLength(10.0)))
EXPLAIN_RECORD = 172  # CRBBB + LAFB: conduction findings a prototype or a factor can show


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the main job on the bundled records with the shipped models")
    p.add_argument("--out", default="runs/demo", help="output directory (created; nothing is written elsewhere)")
    p.add_argument("--top", type=int, default=3, help="statements listed per record and model")
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = list_samples()
    records = {s.ecg_id: load_sample(s.ecg_id, sampling_rate=max(s.rates)) for s in samples}
    summary: dict = {"records": [], "models": {}}
    folds = {s.ecg_id: s.strat_fold for s in samples}
    print("bundled PTB-XL records (raw rate -> model rate, PTB-XL fold), with their PTB-XL statements.\n"
          "The shipped models trained on folds 1-8: only fold 9-10 records are unseen by them.")
    for eid, ecg in records.items():
        prepared = DEMO_PIPELINE.apply(ecg)
        summary["records"].append({"ecg_id": eid, "fold": folds[eid], "labels": list(ecg.labels or ()),
                                   "raw_rate": ecg.sampling_rate, "prepared_shape": list(prepared.signal.shape)})
        print(f"  {eid:>5}  {ecg.sampling_rate:>4.0f} Hz -> {prepared.sampling_rate:.0f} Hz  fold {folds[eid]:>2}  "
              f"{', '.join(ecg.labels or ())}")
    figure = out / f"ecg_{EXPLAIN_RECORD}.png"
    plot_ecg(records[EXPLAIN_RECORD], figure, layout="3x4", title=f"PTB-XL record {EXPLAIN_RECORD} (bundled sample)")
    print(f"wrote {figure}")

    for name in list_pretrained():
        model_dir = pretrained_dir(name)
        kind = load_config(model_dir).get("kind")
        if kind in LOADERS:
            clf = load_classifier(model_dir)
            probs = clf.predict_ecgs(list(records.values()))
            rows = {}
            print(f"\n{name}: top {args.top} statements per record (probability)")
            for eid, p in zip(records, probs):
                top = sorted(zip(clf.labels, p), key=lambda t: -t[1])[: args.top]
                rows[eid] = {label: round(float(v), 4) for label, v in top}
                truth = set(records[eid].labels or ())
                shown = "  ".join(f"{'*' if label in truth else ' '}{label} {v:.2f}" for label, v in top)
                print(f"  {eid:>5}  {shown}")
            print("  (* = a statement PTB-XL lists for the record)")
            summary["models"][name] = {"kind": kind, "top": rows}
        if kind in EXPLAINERS:
            target = out / f"explain_{name}"
            target.mkdir(exist_ok=True)
            result = explainer_for(kind).explain(model_dir, records[EXPLAIN_RECORD], target, ExplainOptions(top=args.top))
            (target / "explanation.json").write_text(json.dumps(result, indent=2, default=str))
            print(f"\n{name}: explanation of record {EXPLAIN_RECORD} written to {target}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out / 'summary.json'}")
    return 0
