"""``ecglens demo``: the main job end to end on the bundled records and the shipped models."""
from __future__ import annotations

from pathlib import Path

from . import COMMANDS

EXPLAIN_RECORD = 172  # CRBBB + LAFB: conduction findings a prototype or a factor can show (the report's record)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help=COMMANDS["demo"])
    p.add_argument("--out", default="runs/demo", help="output directory (created; nothing is written elsewhere)")
    p.add_argument("--top", type=int, default=3, help="statements listed per record and model")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atomic import write_json_atomic
    from ..preprocess import Bandpass, FixLength, Pipeline, Resample
    from ..report import Reporter, write_reports
    from ..samples import list_samples, load_sample, sample_path
    from ..viz import plot_ecg

    # what the demo shows of each record before any model: a typical model-input pipeline
    shown = Pipeline((Resample(100), Bandpass(0.5, 40.0), FixLength(10.0)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = list_samples()
    records = {s.ecg_id: load_sample(s.ecg_id, sampling_rate=max(s.rates)) for s in samples}
    summary: dict = {"records": [], "models": {}}
    folds = {s.ecg_id: s.strat_fold for s in samples}
    print("bundled PTB-XL records (raw rate -> model rate, PTB-XL fold), with their PTB-XL statements.\n"
          "The shipped models trained on folds 1-8: only fold 9-10 records are unseen by them.")
    for eid, ecg in records.items():
        prepared = shown.apply(ecg)
        summary["records"].append({"ecg_id": eid, "fold": folds[eid], "labels": list(ecg.labels or ()),
                                   "raw_rate": ecg.sampling_rate, "prepared_shape": list(prepared.signal.shape)})
        print(f"  {eid:>5}  {ecg.sampling_rate:>4.0f} Hz -> {prepared.sampling_rate:.0f} Hz  fold {folds[eid]:>2}  "
              f"{', '.join(ecg.labels or ())}")
    figure = out / f"ecg_{EXPLAIN_RECORD}.png"
    plot_ecg(records[EXPLAIN_RECORD], figure, layout="3x4", title=f"PTB-XL record {EXPLAIN_RECORD} (bundled sample)")
    print(f"wrote {figure}")

    reporter = Reporter(workdir=out)  # every shipped model, loaded once for the predictions and the report
    for model in reporter.models:
        name = model.name
        if model.can_predict:
            prediction = model.predict(list(records.values()))
            rows = {}
            print(f"\n{name}: top {args.top} statements per record (probability; + = called at its threshold)")
            for i, eid in enumerate(records):
                top = prediction.top(i, args.top)
                rows[eid] = {label: round(v, 4) for label, v in top}
                truth, called = set(records[eid].labels or ()), set(prediction.called(i))
                shown_top = "  ".join(f"{'*' if label in truth else ' '}{label} {v:.2f}{'+' if label in called else ' '}"
                                      for label, v in top)
                print(f"  {eid:>5}  {shown_top}")
            print("  (* = a statement PTB-XL lists for the record)")
            summary["models"][name] = {"kind": model.kind.name, "top": rows}
    rate = max(next(s.rates for s in samples if s.ecg_id == EXPLAIN_RECORD))
    result = write_reports([sample_path(EXPLAIN_RECORD, rate)], out / "report", reporter)
    page, row = result["pages"][0], result["rows"][0]
    summary["report"] = {"page": str(page), "bytes": row["bytes"], "seconds": round(row["seconds"], 2)}
    write_json_atomic(out / "summary.json", summary, indent=2)
    print(f"\nwrote {out / 'summary.json'}")
    print(f"\nreport of record {EXPLAIN_RECORD} (every shipped model and its explanation, one page; "
          f"{row['bytes'] / 1e6:.1f} MB, {row['seconds']:.1f} s):\n{page.resolve()}")
    return 0
