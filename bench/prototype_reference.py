"""Per-prototype similarity reference: the training records' best-window similarities, as quantiles.

For every prototype of a ProtoECGNet checkpoint (default: the shipped ``protoecgnet``), runs every
PTB-XL record of the training folds 1-8 (label set "all", the checkpoint's own pipeline) through the
network in eval mode and keeps the prototype's score, its cosine similarity at the best-matching
window. The 101 quantiles (0, 1, ..., 100 %) of those scores go into the checkpoint's gallery:

- ``gallery.safetensors``: ``similarity_quantiles``, float32 (prototypes, 101), fusion order;
- ``gallery.json``: ``similarity_reference`` with the folds, record count, levels, what was measured and
  a fingerprint of the weights a similarity depends on (backbones, add-ons, prototypes), so the
  explainer says "not available" when they no longer match.

``model.safetensors`` and ``config.json`` are not touched. The explainer reports a match's similarity as
its percentile in this distribution. Both gallery files are rewritten atomically (the JSON last).

    .venv/bin/python bench/prototype_reference.py [--data ../shared/data/ptb-xl] [--model protoecgnet]

Also writes bench/results/prototype_reference.{json,md} (a summary of the spread per branch).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
RESULTS = REPO / "bench" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ptb-xl"
N_QUANTILES = 101


def training_similarities(net, signals: np.ndarray, batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """(N, P) best-window cosine similarity of every prototype (fusion order) on every record, eval mode."""
    import torch
    from tqdm import tqdm

    net.eval()
    parts = []
    with torch.no_grad():
        for i in tqdm(range(0, len(signals), batch_size), desc="similarities", unit="batch", disable=not progress):
            x = torch.from_numpy(np.array(signals[i:i + batch_size], dtype=np.float32))
            out = net(x)
            parts.append(torch.cat([out.similarities[n] for n in net.branch_names], dim=1).numpy())
    return np.concatenate(parts).astype(np.float64)


def write_reference(model_dir: Path, quantiles: np.ndarray, meta: dict) -> None:
    """Add (or replace) the reference in the gallery files, each rewritten atomically, the JSON last."""
    from safetensors.numpy import load_file, save

    from ecglens.atomic import write_bytes_atomic, write_text_atomic
    from ecglens.explain.protoecgnet import REFERENCE_ARRAY, REFERENCE_META
    from ecglens.models.protoecgnet.projection import GALLERY_TABLE, GALLERY_WEIGHTS

    arrays = load_file(str(model_dir / GALLERY_WEIGHTS))
    arrays[REFERENCE_ARRAY] = np.ascontiguousarray(quantiles, dtype=np.float32)
    write_bytes_atomic(model_dir / GALLERY_WEIGHTS, save(arrays))
    table = json.loads((model_dir / GALLERY_TABLE).read_text())
    table[REFERENCE_META] = meta
    write_text_atomic(model_dir / GALLERY_TABLE, json.dumps(table, indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="PTB-XL directory")
    p.add_argument("--model", default="protoecgnet", help="a ProtoECGNet checkpoint (name or directory)")
    p.add_argument("--cache", type=Path, default=REPO / "bench" / "work" / "cache", help="signal cache directory")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    import torch

    from ecglens.atomic import write_json_atomic, write_text_atomic
    from ecglens.datasets.ptbxl import PTBXL, TRAIN_FOLDS
    from ecglens.explain.protoecgnet import similarity_fingerprint
    from ecglens.models.loading import load_any

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    clf, kind, model_dir = load_any(args.model, device="cpu")
    if kind.name != "protoecgnet":
        raise SystemExit(f"{model_dir}: a {kind.name} checkpoint has no prototypes")
    net = clf.model.net
    split = PTBXL(args.data, 100).load("all", TRAIN_FOLDS, clf.pipeline, cache_dir=args.cache)
    sims = training_similarities(net, split.signals)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    quantiles = np.quantile(sims, levels, axis=0).T  # (P, 101)
    meta = {"what": "per prototype, quantiles of the best-window cosine similarity over the training records",
            "folds": list(TRAIN_FOLDS), "label_set": "all", "n_records": len(sims),
            "levels_percent": [float(v) for v in levels * 100], "data": str(args.data.resolve().name),
            "fingerprint": similarity_fingerprint(net), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "script": "bench/prototype_reference.py"}
    write_reference(Path(model_dir), quantiles, meta)

    table = net.prototype_table()
    summary = {}
    for branch in net.branch_names:
        cols = [r["id"] for r in table if r["branch"] == branch]
        q = quantiles[cols]
        summary[branch] = {"prototypes": len(cols), "median_p5": float(np.median(q[:, 5])),
                           "median_p50": float(np.median(q[:, 50])), "median_p95": float(np.median(q[:, 95])),
                           "median_p95_minus_p5": float(np.median(q[:, 95] - q[:, 5]))}
    result = {"model": str(args.model), "n_records": len(sims), "folds": list(TRAIN_FOLDS),
              "skipped": split.skipped, "branches": summary, "wall_s": time.perf_counter() - t0,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "prototype_reference.json", result, indent=2)
    lines = ["# Prototype similarity reference", "",
             (f"Best-window cosine similarity of each prototype on the {len(sims)} training records (folds 1-8) of "
              f"`{args.model}`; the per-prototype 101 quantiles are stored in its gallery and turn a match's "
              "similarity into a percentile. Medians over each branch's prototypes of the 5th / 50th / 95th "
              "percentile. Written by `bench/prototype_reference.py`."), "",
             "| branch | prototypes | p5 | p50 | p95 | p95 - p5 |", "|---|---|---|---|---|---|"]
    for branch, row in summary.items():
        lines.append(f"| {branch} | {row['prototypes']} | {row['median_p5']:.4f} | {row['median_p50']:.4f} | "
                     f"{row['median_p95']:.4f} | {row['median_p95_minus_p5']:.4f} |")
    write_text_atomic(RESULTS / "prototype_reference.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote the reference into {model_dir} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
