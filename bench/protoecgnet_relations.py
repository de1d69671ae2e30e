"""Which statements the case-based head may cite, on fixed prototype scores (issue 25, fold 9 only).

For every seed of the given ``bench/protoecgnet_finetune.py`` configurations (``--tag``), the related head is
re-fitted on the network's fixed prototype scores (``heads.fit_fusion_on_scores``, the fine-tune's re-fit) for
each relation and L1 on its related weights:

* ``co-occurrence``: the statements whose training Jaccard is above 0.05 (the shipped head's);
* ``+ diagnostic class`` / ``+ diagnostic subclass``: also every two statements of one PTB-XL diagnostic class
  (subclass) (``ProtoTrainConfig.related_groups``);
* ``every pair``: any statement may cite any other's prototypes (a dense head under the same L1).

and scored on fold 9: macro AUROC, and the called statements' median own share and top-3 coverage (the
explanation targets, >= 0.5). Writes ``bench/results/protoecgnet_relations.{json,md}``:

    .venv/bin/python bench/protoecgnet_relations.py --tag trunk_all_auroc_refit_ploss0.25
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import explanation_metrics as em
from protoecgnet_finetune import RESULTS, WORK, load_folds

from ecglens.atomic import write_json_atomic, write_text_atomic

RELATIONS = {"co-occurrence": {}, "+ diagnostic class": {"related_groups": "diagnostic_class"},
             "+ diagnostic subclass": {"related_groups": "diagnostic_subclass"},
             "every pair": {"related_threshold": -1.0}}
L1S = (5e-4, 1e-3, 2e-3)


def refits(model_dir: Path, data: Path) -> list[dict]:
    """Every relation x L1 re-fit of one trained network's head, scored on fold 9."""
    import torch

    from ecglens.api import load_model
    from ecglens.metrics import macro_auroc
    from ecglens.models.protoecgnet.config import related_pairs
    from ecglens.models.protoecgnet.heads import fit_fusion_on_scores, predict_heads, related_facts
    from ecglens.models.protoecgnet.recipe import ProtoTrainConfig

    torch.set_num_threads(1)
    clf = load_model(model_dir).loaded
    net = clf.model.net
    _, folds, labels = load_folds(clf.pipeline, data, clf.config["label_set"])
    recipe = ProtoTrainConfig.from_dict(clf.config["recipe"])
    scores = {p: predict_heads(net, folds[p][1])["scores"] for p in ("train", "val")}
    targets = {p: folds[p][2] for p in scores}
    rows = []
    for relation, change in RELATIONS.items():
        pairs = related_pairs(tuple(labels), **related_facts(targets["train"], labels,
                                                             dataclasses.replace(recipe, **change)))
        for l1 in L1S:
            head, _ = fit_fusion_on_scores(net, "related", scores, targets,
                                           dataclasses.replace(recipe, related_l1=l1), 0, pairs)
            z = em.head_logits(head, scores["val"])
            _, stats = em.called_explanations(head, labels, scores["val"], z, targets["val"], z, targets["train"].sum(0))
            rows.append({"relation": relation, "n_pairs": len(pairs), "related_l1": l1,
                         "macro_auroc_val": macro_auroc(targets["val"], z)[0],
                         "own_share_val": stats["own_share_median"], "top3_val": stats["top3_coverage_median"]})
            print(f"{model_dir}: {relation} ({len(pairs)} pairs) L1 {l1:g}: {rows[-1]['macro_auroc_val']:.4f} "
                  f"own {rows[-1]['own_share_val']:.3f} top3 {rows[-1]['top3_val']:.3f}", flush=True)
    return rows


def summarise(runs: dict[str, list[list[dict]]]) -> list[dict]:
    """Per configuration, relation and L1: the seeds' fold-9 values and whether every seed meets the targets."""
    out = []
    for tag, seeds in runs.items():
        for i, first in enumerate(seeds[0]):
            cells = [s[i] for s in seeds]
            out.append({"tag": tag, **{k: first[k] for k in ("relation", "n_pairs", "related_l1")},
                        "macro_auroc_val": em._mean_sd([c["macro_auroc_val"] for c in cells]),
                        "own_share_val": [c["own_share_val"] for c in cells],
                        "top3_val": [c["top3_val"] for c in cells],
                        "targets_met_all_seeds": all(c["own_share_val"] >= em.TARGETS["own_share"]
                                                     and c["top3_val"] >= em.TARGETS["top3_coverage"] for c in cells)})
    return out


def render(doc: dict) -> str:
    lines = ["# Which statements the case-based head may cite (issue 25, fold 9)", "",
             "The related head re-fitted on each trained network's fixed prototype scores (`protoecgnet_relations.py`"
             "; the networks are `protoecgnet_finetune.py` runs, `protoecgnet_trunk.md`), per relation and L1 on its "
             "related weights. Fold 9 only: macro AUROC (mean +/- SD over the seeds), the called statements' median "
             "own share and top-3 coverage per seed (targets >= 0.5).", "",
             "| networks | relation | pairs | L1 | macro AUROC | per seed | own share | top-3 coverage | targets met "
             "(every seed) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['tag']} | {r['relation']} | {r['n_pairs']} | {r['related_l1']:g} | "
                     f"{em._mean_sd_cells(r['macro_auroc_val'])} | {em._values(r['own_share_val'])} | "
                     f"{em._values(r['top3_val'])} | {'yes' if r['targets_met_all_seeds'] else 'no'} |")
    lines += ["", f"Python {doc['python']}, 1 thread.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", action="append", required=True, help="a configuration under --work (repeat)")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--data", type=Path, default=em.DATA)
    args = ap.parse_args()
    runs = {tag: [refits(d, args.data) for d in sorted((args.work / tag).glob("seed*/model"))] for tag in args.tag}
    doc = {"benchmark": "protoecgnet_relations", "python": platform.python_version(), "tags": args.tag,
           "relations": RELATIONS, "l1s": list(L1S), "rows": summarise(runs)}
    write_json_atomic(args.out / "protoecgnet_relations.json", doc)
    write_text_atomic(args.out / "protoecgnet_relations.md", render(doc))
    print(f"wrote {args.out / 'protoecgnet_relations.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
