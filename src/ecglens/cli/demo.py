"""``ecglens demo``: the main job end to end on the bundled records and shipped weights."""
from __future__ import annotations

import json
from pathlib import Path

from ..preprocess import Bandpass, FixLength, Pipeline, Resample
from ..samples import list_samples, load_sample
from ..viz import plot_ecg

# What the demo shows of each record before any model: the preprocessing every model uses.
DEMO_PIPELINE = Pipeline((Resample(100), Bandpass(0.5, 40.0), FixLength(10.0)))


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the main job on the bundled sample records")
    p.add_argument("--out", default="runs/demo", help="output directory (created; nothing is written elsewhere)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for info in list_samples():
        ecg = load_sample(info.ecg_id, sampling_rate=max(info.rates))
        prepared = DEMO_PIPELINE.apply(ecg)
        rows.append({
            "ecg_id": info.ecg_id,
            "labels": list(ecg.labels or ()),
            "raw": {"sampling_rate": ecg.sampling_rate, "n_samples": ecg.n_samples},
            "preprocessed": {"sampling_rate": prepared.sampling_rate, "n_samples": prepared.n_samples,
                             "pipeline": DEMO_PIPELINE.to_dict()},
        })
        print(f"record {info.ecg_id:>5}  {ecg.sampling_rate:>5.0f} Hz -> {prepared.sampling_rate:.0f} Hz  "
              f"labels: {', '.join(ecg.labels or ()) or '-'}")
    first = list_samples()[0]
    figure = out / f"ecg_{first.ecg_id}.png"
    plot_ecg(load_sample(first.ecg_id, sampling_rate=max(first.rates)), figure, layout="3x4",
             title=f"PTB-XL record {first.ecg_id} (bundled sample)")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {figure} and {out / 'summary.json'}")
    return 0
