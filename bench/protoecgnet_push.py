"""ProtoECGNet on the baseline's trunk with the prototypes projected during the fine-tune (``TrunkRecipe.push_every``;
issue 25, fold 9 only).

Trains (or resumes) ``ecglens train protoecgnet --trunk baseline --related-groups diagnostic_class`` with
``push_every`` N for each listed N and seed, and writes every run's fold-9 macro AUROC of the fused logits after the
fine-tune (its best epoch), right after the first projection (refine's epoch 0), after refine, and of the re-fitted
head, with the head's explanation medians, to ``bench/results/protoecgnet_push.{json,md}``. N = 0 (the shipped
recipe) reads the benchmark's runs (``bench/run.py --models protoecgnet-trunk``), the same recipe and seeds.

    .venv/bin/python bench/protoecgnet_push.py --push 0 5 10 --seeds 0 1 2
    .venv/bin/python bench/protoecgnet_push.py --push 0 5 10 --seeds 0 1 2 3 4 --finished-only   # the table as run
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import explanation_metrics as em  # noqa: E402

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402

WORK = REPO / "bench" / "work" / "protoecgnet_push"
BENCHMARK_RUNS = REPO / "bench" / "work" / "runs" / "protoecgnet-trunk" / "all"
RESULTS = REPO / "bench" / "results"
GROUPS = "diagnostic_class"


def run_dir(push: int, seed: int) -> Path:
    return BENCHMARK_RUNS / f"seed{seed}" if push == 0 else WORK / f"push{push}" / f"seed{seed}"


def train(push: int, seed: int, data: Path) -> Path:
    from ecglens.models.protoecgnet.recipe import ProtoTrainConfig, TrunkRecipe
    from ecglens.models.protoecgnet.train import train_protoecgnet

    out = run_dir(push, seed)
    train_protoecgnet(data, "all", out, ProtoTrainConfig(related_groups=GROUPS, trunk=TrunkRecipe(push_every=push)),
                      seed=seed, cache_dir=REPO / "bench" / "work" / "cache", progress=False, trunk_from="baseline",
                      resume=True)
    return out


def facts(push: int, seed: int, out: Path) -> dict:
    """One run's fold-9 numbers from its stage facts and logs."""
    stage = {s: json.loads((out / s / "stage.json").read_text()) for s in ("finetune", "refine", "head")}
    refine_log = [json.loads(line) for line in (out / "refine" / "train_log.jsonl").read_text().splitlines()]
    head = stage["head"]["candidates"][stage["head"]["kept"]]
    return {"push_every": push, "seed": seed, "finetune": stage["finetune"]["val_macro_auroc"],
            "finetune_best_epoch": stage["finetune"]["best_epoch"],
            "pushed_at_epochs": stage["finetune"].get("pushed_at_epochs", []),
            "after_projection": next(r["val_macro_auroc"] for r in refine_log if r["epoch"] == 0),
            "refine": stage["refine"]["val_macro_auroc"], "final": stage["head"]["val_macro_auroc"],
            "head": stage["head"]["kept"], "own_share": head["own_share_median"], "top3": head["top3_coverage_median"]}


def render(doc: dict) -> str:
    lines = ["# ProtoECGNet on the trunk: projecting during the fine-tune (fold 9)", "",
             "`python bench/protoecgnet_push.py`: the shipped recipe (`ecglens train protoecgnet --trunk baseline "
             "--related-groups diagnostic_class`) with the prototypes projected onto training patches every N "
             "fine-tune epochs before its last (`TrunkRecipe.push_every`; 0: only after it, as shipped; its runs are "
             "`bench/run.py`'s protoecgnet-trunk). Fold-9 macro AUROC of the fused logits: the fine-tune's best "
             "epoch, right after the first projection, after refine, and with the re-fitted related head (the "
             "final model); its median own share and top-3 coverage of called statements. Nothing here reads "
             "fold 10.", "",
             "| push every | seeds | fine-tuned | after projection | after refine | final, mean +/- SD | final per seed "
             "| own share | top-3 |", "|---|---|---|---|---|---|---|---|---|"]
    for push in doc["push"]:
        rows = [r for r in doc["runs"] if r["push_every"] == push]
        cell = {k: em._values([r[k] for r in rows]) for k in ("finetune", "after_projection", "refine", "own_share",
                                                              "top3")}
        lines.append(f"| {push} | {', '.join(str(r['seed']) for r in rows)} | {cell['finetune']} | "
                     f"{cell['after_projection']} | {cell['refine']} | "
                     f"{em._mean_sd_cells(em._mean_sd([r['final'] for r in rows]))} | {cell['own_share']} | "
                     f"{cell['top3']} |")
    lines += ["", f"Python {doc['python']}, 1 thread per run, 2 shared cores.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--push", type=int, nargs="+", default=[0, 5, 10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", type=Path, default=em.DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--finished-only", action="store_true", help="train nothing: report the finished runs among those")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    runs = [facts(push, seed, run_dir(push, seed) if args.finished_only else train(push, seed, args.data))
            for push in args.push for seed in args.seeds
            if not args.finished_only or (run_dir(push, seed) / "head" / "stage.json").is_file()]
    doc = {"benchmark": "protoecgnet_push", "python": platform.python_version(), "push": args.push,
           "seeds": args.seeds, "runs": runs}
    write_json_atomic(args.out / "protoecgnet_push.json", doc)
    write_text_atomic(args.out / "protoecgnet_push.md", render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
