"""Put one fusion head trained by ``bench/explanation_metrics.py`` into the shipped ProtoECGNet.

Only the fusion weights (``fusion.*`` in ``model.safetensors``) and the head fields of ``config.json`` change
(``model.fusion`` and, for the related head, ``model.cooccurrence`` / ``model.related_threshold``; ``head``;
``recipe.head`` / ``related_l1`` / ``related_threshold``; ``head_options``: every head the benchmark compared,
with its numbers); the network, the gallery and everything else stay as they are. The head must have been
trained on this very network's prototype scores (the benchmark reads the shipped model). The calibration,
fitted to the previous head, is dropped; re-fit it afterwards: ``.venv/bin/python bench/ship.py --calibrate-only --only protoecgnet``.

    .venv/bin/python bench/ship_fusion_head.py related [--target DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.atomic import write_bytes_atomic, write_text_atomic  # noqa: E402
from ecglens.pretrained import pretrained_root  # noqa: E402
from ecglens.training import load_checkpoint  # noqa: E402

HEADS = REPO / "bench" / "work" / "explanation_metrics" / "heads"
RESULTS = REPO / "bench" / "results" / "explanation_metrics.json"


def main() -> int:
    from safetensors.torch import save as safetensors_bytes

    from ecglens.models.protoecgnet.classifier import model_from_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("dense", "masked", "related"))
    ap.add_argument("--heads", type=Path, default=HEADS)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--target", type=Path, default=pretrained_root() / "protoecgnet",
                    help="the ProtoECGNet checkpoint to change (default: the shipped one)")
    args = ap.parse_args()
    target = args.target
    state, config = load_checkpoint(target)
    head, head_config = load_checkpoint(args.heads / args.kind)
    results = json.loads(args.results.read_text())
    fusion_keys = {k for k in state if k.startswith("fusion.")}
    if fusion_keys != {f"fusion.{k}" for k in head}:
        raise SystemExit(f"{args.heads / args.kind}: head tensors {sorted(head)} do not match {sorted(fusion_keys)}")
    state = {**state, **{f"fusion.{k}": v.contiguous() for k, v in head.items()}}
    config["model"]["fusion"] = args.kind
    config["model"]["cooccurrence"] = head_config.get("cooccurrence")
    config["model"]["related_threshold"] = head_config.get("related_threshold", 0.05)
    config["recipe"]["head"] = args.kind
    if args.kind == "related":
        config["recipe"]["related_l1"] = head_config["related_l1"]
        config["recipe"]["related_threshold"] = head_config["related_threshold"]
    config["head"] = f"{args.kind} fusion"
    config["head_options"] = {
        "shipped": args.kind,
        "how": "heads trained on this network's fixed prototype scores (folds 1-8, best fold-9 epoch) by "
               "bench/explanation_metrics.py; the others are options: train with --head, or ship another with "
               "bench/ship_fusion_head.py",
        "compared": {k: {"macro_auroc_fold10_mean": r["macro_auroc_test"]["mean"],
                         "macro_auroc_fold10_sd": r["macro_auroc_test"]["sd"],
                         "own_share_median_fold10": r["explanation_test"]["own_share_median"],
                         "top3_coverage_median_fold10": r["explanation_test"]["top3_coverage_median"]}
                     for k, r in results["heads"].items()},
        "head_seed": head_config.get("seed"),
    }
    config.pop("calibration", None)  # fitted to the previous head: re-fit with bench/ship.py --calibrate-only
    model = model_from_checkpoint(state, config, target)  # the new pair loads and carries the head
    for k, v in head.items():
        assert bool((getattr(model.fusion, k) == v).all()), k
    write_bytes_atomic(target / "model.safetensors", safetensors_bytes(state))
    write_text_atomic(target / "config.json", json.dumps(config, indent=2) + "\n")
    print(f"protoecgnet: {args.kind} fusion shipped; now run bench/ship.py --calibrate-only --only protoecgnet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
