"""How local is a morphology prototype's match? Gradient mass of its similarity inside the ~1-s window shown.

A ProtoECGNet explanation says "looks like this prototype, here": the morphology branch's best-matching
window (its footprint, about 1 s) is drawn on the record. How much of what decides the match lies there depends
on the backbone: the shipped network's small branch backbones see 0.9 s around a latent step, the baseline's
xresnet1d trunk 8.7 s. For each fold-9 record (validation fold only) and each model, the morphology prototype with
the highest similarity is taken at its best window, and the gradient of that similarity with respect to the input
(absolute, summed over leads) is split by time: the share inside the footprint, inside the footprint widened by
0.5 s on each side, and inside the theoretical receptive field.

    .venv/bin/python bench/protoecgnet_locality.py --models protoecgnet bench/work/protoecgnet_finetune/<tag>/seed0/model

Rows are kept by model name: a run measures the models it names and keeps the earlier rows of the others (the
``protoecgnet`` row stays the network shipped when it was measured).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import explanation_metrics as em
import numpy as np
import torch
from protoecgnet_finetune import RESULTS, load_folds

from ecglens.atomic import write_json_atomic, write_text_atomic

MARGIN_S = 0.5


def gradient_shares(model, x: np.ndarray, sampling_rate: float) -> dict[str, list[float]]:
    """Per record: the shares of the best morphology match's input-gradient mass inside its footprint, the footprint
    widened by ``MARGIN_S`` on each side, and its receptive field."""
    branch = model.branches["morphology"]
    margin = int(round(MARGIN_S * sampling_rate))
    out = {"footprint": [], "footprint_pm_0.5s": [], "receptive_field": []}
    model.eval()
    for record in x:
        inp = torch.from_numpy(np.array(record, dtype=np.float32))[None].requires_grad_(True)
        result = model(inp)
        sims = result.similarities["morphology"][0]
        p = int(sims.argmax())
        sims[p].backward()
        mass = inp.grad[0].abs().sum(0).numpy().astype(np.float64)
        window = result.best_window["morphology"][0, p:p + 1]
        lo, hi = branch.input_spans(window, "footprint")[0].tolist()
        rlo, rhi = branch.input_spans(window, "receptive_field")[0].tolist()
        total = mass.sum()
        out["footprint"].append(float(mass[lo:hi].sum() / total))
        out["footprint_pm_0.5s"].append(float(mass[max(0, lo - margin):hi + margin].sum() / total))
        out["receptive_field"].append(float(mass[rlo:rhi].sum() / total))
    return out


def main() -> int:
    from ecglens.api import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="shipped ProtoECGNet names or checkpoint directories")
    ap.add_argument("--records", type=int, default=100, help="the first N fold-9 records")
    ap.add_argument("--data", type=Path, default=em.DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        clf = load_model(name).loaded
        model = clf.model.net
        _, folds, _ = load_folds(clf.pipeline, args.data)
        x = folds["val"][1][:args.records]
        shares = gradient_shares(model, x, model.config.sampling_rate)
        geometry = model.branches["morphology"].time_geometry
        rows.append({"model": name, "records": len(x), "stride": geometry.stride,
                     "receptive_field_s": geometry.receptive_field / model.config.sampling_rate,
                     "footprint_s": model.branches["morphology"].prototype_layer.length * geometry.stride
                     / model.config.sampling_rate,
                     **{k: {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)),
                            "q75": float(np.percentile(v, 75))} for k, v in shares.items()}})
        print(name, {k: round(rows[-1][k]["median"], 3) for k in shares}, flush=True)
    path = args.out / "protoecgnet_locality.json"
    earlier = json.loads(path.read_text())["rows"] if path.is_file() else []
    rows = [r for r in earlier if r["model"] not in args.models] + rows  # a model not named keeps its earlier row
    doc = {"benchmark": "protoecgnet_locality", "fold": 9, "python": platform.python_version(),
           "torch": torch.__version__, "margin_s": MARGIN_S, "rows": rows}
    write_json_atomic(path, doc)
    lines = ["# Locality of ProtoECGNet's morphology matches (fold 9)", "",
             "`python bench/protoecgnet_locality.py`: for each of the first "
             f"{args.records} fold-9 records, the morphology prototype with the highest similarity at its best "
             "window; the gradient of that similarity with respect to the input (|gradient| summed over leads) split "
             "by time. Shares are of the whole record's gradient mass; median (quartiles) over the records.", "",
             "| model | latent stride (samples) | footprint s | receptive field of a step s | in footprint | in footprint "
             f"+/- {MARGIN_S:g} s | in receptive field |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]['median']:.2f} ({r[k]['q25']:.2f}-{r[k]['q75']:.2f})"
                 for k in ("footprint", "footprint_pm_0.5s", "receptive_field")]
        lines.append(f"| {r['model']} | {r['stride']} | {r['footprint_s']:.2f} | {r['receptive_field_s']:.2f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Rows are kept by model name (a run re-measures only the models it names); `protoecgnet` is the network "
              f"shipped when its row was measured. Python {doc['python']}, torch {doc['torch']}.", ""]
    write_text_atomic(args.out / "protoecgnet_locality.md", "\n".join(lines))
    print(f"wrote {args.out / 'protoecgnet_locality.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
