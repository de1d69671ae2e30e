"""Variants of read 3's trunk ProtoECGNet recipe on fold 9 (issue 25): prototypes projected during the fine-tune
(``TrunkRecipe.push_every``), more or fewer prototypes per class (``--prototypes-per-class``), shorter or longer
morphology prototypes (``--prototype-seconds``), a finer grid of head L1s, a longer refine, an L1 on the related head
during training (``--loop-l1``, the package's default since), teacher targets for the head.

Trains (or resumes) ``ecglens train protoecgnet --trunk baseline --related-groups diagnostic_class`` with the recipe
of the network shipped from read 3 until loop-l1 replaced it (``READ3_TRUNK``; the variant "shipped") and each named
variant's changes (``VARIANTS``) for each seed, and writes every run's fold-9 macro AUROC of the fused logits after
the fine-tune (its best epoch), right after the first projection (refine's epoch 0), after refine, and of the
re-fitted head, with the head's explanation medians, its training wall time and fold-9 records/s, to
``bench/results/protoecgnet_variants.{json,md}``. Each label set's runs start from its seed-0 baseline, as
``bench/run.py``'s. A variant that changes only later stages (``Variant.redo_from``) resumes a copy of another
variant's runs, so its earlier stages are that variant's, seed by seed. Nothing here reads fold 10.

    .venv/bin/python bench/protoecgnet_variants.py --variants shipped push5 morph9 --seeds 0 1 2
    .venv/bin/python bench/protoecgnet_variants.py --variants loop-l1 --label-sets superdiagnostic --seeds 0 1 2
    .venv/bin/python bench/protoecgnet_variants.py --variants shipped push5 ... --seeds 0 1 2 3 4 5 6 \
        --finished-only   # the table as run (runs no longer on disk are carried from the earlier json)
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import explanation_metrics as em  # noqa: E402
from run import PROTOECGNET_GROUPS, TRUNK_BASELINES  # noqa: E402

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402

WORK = REPO / "bench" / "work" / "protoecgnet_variants"
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Variant:
    """A change to read 3's recipe: ``trunk`` (``TrunkRecipe`` fields), ``counts`` (prototypes per class by
    branch), ``seconds`` (partial prototypes' length by branch); ``redo_from`` (variant, stage): a copy of that
    variant's runs up to the stage, resumed (the stages from there on run with this variant's recipe)."""

    about: str
    trunk: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    redo_from: tuple[str, str] | None = None
    stopped: str = ""  # why it has fewer seeds than the others, when it was stopped early


FINE_L1 = (5e-4, 7e-4, 1e-3, 1.5e-3, 2e-3)
# The recipe every variant changes: that of the network shipped from issue 25's read 3 until loop-l1 replaced it
# (the package's defaults since: the L1 in the loop and the finer head grid, which "loop-l1" sets explicitly).
READ3_TRUNK = {"loop_l1": 0.0, "head_l1": (1e-3, 2e-3)}
VARIANTS: dict[str, Variant] = {
    "shipped": Variant("the recipe of the network shipped until loop-l1 replaced it (prototypes per class rhythm 3, "
                       "morphology 3, global 5; no L1 in the loop, head L1 0.001/0.002)"),
    "push5": Variant("also projected every 5 fine-tune epochs", trunk={"push_every": 5}),
    "push10": Variant("also projected every 10 fine-tune epochs", trunk={"push_every": 10}),
    "morph9": Variant("9 morphology prototypes per class", counts={"morphology": 9},
                      stopped="after 2 seeds: 0.883 and 0.882 against the shipped recipe's 0.880 and 0.897 on the "
                              "same seeds (that session's runs), and only the strongest head L1 (0.002) kept top-3 "
                              "coverage at 0.5"),
    "paper": Variant("the paper's counts: rhythm 5, morphology 18, global 7",
                     counts={"rhythm": 5, "morphology": 18, "global": 7},
                     stopped="after 1 seed: no head L1 met the top-3 coverage minimum (0.265 and 0.389), so the head "
                             "with the largest own share was kept"),
    "shipped-l1": Variant("the shipped runs' head re-fitted at L1 " + "/".join(f"{v:g}" for v in FINE_L1),
                          trunk={"head_l1": FINE_L1}, redo_from=("shipped", "head")),
    "morph9-l1": Variant("the morph9 runs' head re-fitted at L1 " + "/".join(f"{v:g}" for v in FINE_L1),
                         trunk={"head_l1": FINE_L1}, counts={"morphology": 9}, redo_from=("morph9", "head")),
    "morph0.5s": Variant("morphology prototypes 0.5 s long (3 latent steps) instead of 1 s",
                         seconds={"morphology": 0.5}),
    "morph0.75s": Variant("morphology prototypes 0.75 s long (5 latent steps, 0.8 s) instead of 1 s",
                          seconds={"morphology": 0.75}),
    "morph2s": Variant("morphology prototypes 2 s long (12 latent steps) instead of 1 s",
                       seconds={"morphology": 2.0},
                       stopped="after 1 seed, when seed 0 of the 0.5-s prototypes was further above the shipped recipe "
                               "(0.900 against 0.888; shipped 0.880)"),
    "morph2-l1": Variant("2 morphology prototypes per class (a statement's evidence on fewer prototypes, so a weaker "
                         "head L1 may meet the minima), head L1 " + "/".join(f"{v:g}" for v in FINE_L1),
                         counts={"morphology": 2}, trunk={"head_l1": FINE_L1}),
    "loop-l1": Variant("L1 0.001 on the related head's related weights during the fine-tune and refine (loop_l1; "
                       "0 shipped), so a statement's evidence settles on its own prototypes and a weaker head L1 may "
                       "meet the minima; head L1 " + "/".join(f"{v:g}" for v in FINE_L1),
                       trunk={"loop_l1": 1e-3, "head_l1": FINE_L1}),
    "shipped-hd3": Variant("the shipped runs' head re-fitted on the labels mixed with the baseline's probabilities at "
                           "the fine-tune's weight (head_distill 3)", trunk={"head_distill": 3.0},
                           redo_from=("shipped", "head")),
    "shipped-hd3-l1": Variant("the shipped runs' head re-fitted with head_distill 3 at L1 "
                              + "/".join(f"{v:g}" for v in FINE_L1),
                              trunk={"head_distill": 3.0, "head_l1": FINE_L1}, redo_from=("shipped", "head")),
    "refine20": Variant("refine 20 epochs instead of 10 (the shipped runs' fine-tune and projection)",
                        trunk={"refine_epochs": 20}, redo_from=("shipped", "refine")),
}


def run_dir(variant: str, seed: int, label_set: str = "all") -> Path:
    return WORK / (variant if label_set == "all" else f"{variant}-{label_set}") / f"seed{seed}"


def recipe(variant: str):
    from ecglens.models.protoecgnet.recipe import ProtoTrainConfig, TrunkRecipe, recipe_with_prototypes

    v = VARIANTS[variant]
    return recipe_with_prototypes(ProtoTrainConfig(related_groups=PROTOECGNET_GROUPS,
                                                   trunk=TrunkRecipe(**{**READ3_TRUNK, **v.trunk})),
                                  v.counts, v.seconds)


def train(variant: str, seed: int, label_set: str, data: Path) -> Path:
    """One run on ``label_set``'s seed-0 baseline (as ``bench/run.py``'s protoecgnet-trunk rows); a variant that
    redoes later stages starts from a copy of its source's earlier finished stages (their wall times stay counted)."""
    from ecglens.models.protoecgnet.train import train_protoecgnet
    from ecglens.models.protoecgnet.trunk_stages import TRUNK_STAGES

    out, redo = run_dir(variant, seed, label_set), VARIANTS[variant].redo_from
    if redo is not None and not out.exists():
        source, kept = run_dir(redo[0], seed, label_set), TRUNK_STAGES[:TRUNK_STAGES.index(redo[1])]
        shutil.copytree(source, out, ignore=lambda d, names: [n for n in names if Path(d) == source and n not in kept])
    train_protoecgnet(data, label_set, out, recipe(variant), seed=seed, cache_dir=REPO / "bench" / "work" / "cache",
                      progress=False, trunk_from=TRUNK_BASELINES[label_set], resume=True)
    return out


def measured(out: Path, label_set: str, data: Path) -> dict:
    """The finished model's fold-9 records/s (``Classifier.predict_batch``, 1 thread, preprocessing excluded) and,
    per branch, the macro AUROC of the fused logits over that branch's statements after the fine-tune, after
    projection and as finished (where the projection's cost lies)."""
    from ecglens.datasets import PTBXL
    from ecglens.metrics import macro_auroc
    from ecglens.models.loading import load_classifier
    from ecglens.models.protoecgnet.heads import predict_heads
    from ecglens.training.checkpoint import load_checkpoint

    clf = load_classifier(out / "model", device="cpu")
    split = PTBXL(data, sampling_rate=100).load(label_set, folds=(9,), pipeline=clf.pipeline, cache_dir=em.CACHE,
                                                progress=False)
    _, x, y = split.arrays()
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
    rate = em.records_per_second(clf, x)
    net, branches = clf.model.net, {}
    for name, directory in (("finished", None), ("projection", out / "projection" / "model"),
                            ("finetune", out / "finetune" / "model")):
        if directory is not None:
            net.load_state_dict(load_checkpoint(directory)[0])
        z = predict_heads(net, x)["fusion"]
        branches[name] = {b: macro_auroc(y[:, list(cols)], z[:, list(cols)])[0]
                          for b, cols in net.config.branch_index.items()}
    return {"records_per_s": rate, "branch_macro_auroc": branches}


def facts(variant: str, seed: int, label_set: str, out: Path, data: Path) -> dict:
    """One run's fold-9 numbers from its stage facts and logs, its stages' wall time and its speed; also written to
    the run's ``val.json``, where ``bench/protoecgnet_finetune.py evaluate`` and ``bench/protoecgnet_trunk.py
    --read`` find a configuration's fold-9 facts when it is read on fold 10."""
    config = json.loads((out / "model" / "config.json").read_text())
    stage = {s: json.loads((out / s / "stage.json").read_text()) for s in ("finetune", "refine", "head")}
    refine_log = [json.loads(line) for line in (out / "refine" / "train_log.jsonl").read_text().splitlines()]
    head = stage["head"]["candidates"][stage["head"]["kept"]]
    row = {"variant": variant, "label_set": label_set, "seed": seed, "finetune": stage["finetune"]["val_macro_auroc"],
            "finetune_best_epoch": stage["finetune"]["best_epoch"],
            "pushed_at_epochs": stage["finetune"].get("pushed_at_epochs", []),
            "after_projection": next(r["val_macro_auroc"] for r in refine_log if r["epoch"] == 0),
            "refine": stage["refine"]["val_macro_auroc"], "final": stage["head"]["val_macro_auroc"],
            "head": stage["head"]["kept"],
            "best_candidate": max(({"head": n, **{k: c[k] for k in ("val_macro_auroc", "own_share_median",
                                                                       "top3_coverage_median")}}
                                   for n, c in stage["head"]["candidates"].items()),
                                  key=lambda c: c["val_macro_auroc"]),
            "own_share": head["own_share_median"], "top3": head["top3_coverage_median"],
            "n_prototypes": config["training"]["n_prototypes"], "wall_s": sum(config["training"]["wall_s"].values()),
            **measured(out, label_set, data)}
    write_json_atomic(out / "val.json", {**row, "macro_auroc_val": row["final"]})
    return row


def earlier_runs(path: Path) -> dict[tuple[str, str, int], dict]:
    """The runs of an earlier results file by (variant, label set, seed). ``bench/work`` does not outlive a checkout,
    so with ``--finished-only`` a run no longer on disk is reported from there (marked ``carried``)."""
    if not path.is_file():
        return {}
    return {(r["variant"], r["label_set"], r["seed"]): r for r in json.loads(path.read_text())["runs"]}


def unconstrained(c: dict) -> str:
    return (f"{c['head'].removeprefix('l1 ')} {c['val_macro_auroc']:.3f} ({c['own_share_median']:.2f}, "
            f"{c['top3_coverage_median']:.2f})")


def by_branch(rows: list[dict]) -> str:
    steps = ("finetune", "projection", "finished")
    return "; ".join(f"{b} " + " > ".join(f"{np.mean([r['branch_macro_auroc'][st][b] for r in rows]):.3f}"
                                          for st in steps)
                     for b in rows[0]["branch_macro_auroc"]["finished"])


def render(doc: dict) -> str:
    lines = ["# ProtoECGNet on the trunk: variants of read 3's recipe (fold 9)", "",
             "`python bench/protoecgnet_variants.py`: the recipe of the network shipped from issue 25's read 3 until "
             "loop-l1 replaced it (the variant \"shipped\"; `ecglens train protoecgnet --trunk "
             "baseline --related-groups diagnostic_class --loop-l1 0 --head-l1 0.001,0.002`) and variants of it: "
             "prototypes also projected onto training patches every N fine-tune epochs before its last "
             "(`--push-every`; that recipe only after it), more or fewer prototypes per class "
             "(`--prototypes-per-class`), shorter or longer morphology prototypes (`--prototype-seconds`), a finer "
             "grid of head L1s, a longer refine, an L1 on the related head's related weights while the network "
             "trains (`--loop-l1`), the head fitted on targets mixed with the baseline's probabilities. Fold-9 macro "
             "AUROC of the fused logits: the fine-tune's best epoch, right "
             "after the first projection, after refine, and with the re-fitted related head (the final model); its "
             "median own share and top-3 coverage of called statements; by branch, the fused logits' macro AUROC over "
             "that branch's statements (where projection costs); training wall time (all five stages, one "
             "process) and fold-9 records/s of the final model. Nothing here reads fold 10.", "",
             "| variant | prototypes | seeds | fine-tuned | after projection | after refine | final, mean +/- SD "
             "| final per seed | head L1 kept | own share | top-3 "
             "| best head without the minima: L1 AUROC (own share, top-3) "
             "| by branch, mean of seeds: fine-tuned > projected > final | train s | records/s |", "|" + "---|" * 15]
    for variant, label_set in ((v, ls) for ls in doc["label_sets"] for v in doc["variants"]):
        rows = [r for r in doc["runs"] if r["variant"] == variant and r["label_set"] == label_set]
        if not rows:
            continue
        cell = {k: em._values([r[k] for r in rows]) for k in ("finetune", "after_projection", "refine", "final",
                                                              "own_share", "top3")}
        m = em._mean_sd([r["final"] for r in rows])
        mean = f"{m['mean']:.3f}" + (f" +/- {m['sd']:.3f}" if len(rows) > 1 else "")
        lines.append(f"| {variant}{'' if label_set == 'all' else ', ' + label_set}: {VARIANTS[variant].about} | "
                     f"{rows[0]['n_prototypes']} | {', '.join(str(r['seed']) for r in rows)} | {cell['finetune']} | "
                     f"{cell['after_projection']} | {cell['refine']} | {mean} | {cell['final']} | "
                     f"{', '.join(r['head'].removeprefix('l1 ') for r in rows)} | {cell['own_share']} | "
                     f"{cell['top3']} | {'; '.join(unconstrained(r['best_candidate']) for r in rows)} | "
                     f"{by_branch(rows)} | "
                     f"{', '.join(str(round(r['wall_s'])) for r in rows)} | "
                     f"{', '.join(str(round(r['records_per_s'])) for r in rows)} |")
    lines += [""] + [f"- {name} stopped {v.stopped}." for name, v in VARIANTS.items()
                     if v.stopped and name in doc["variants"]]
    carried = {v: [str(r["seed"]) for r in doc["runs"] if r["variant"] == v and r.get("carried")]
               for v in doc["variants"]}
    if any(carried.values()):
        lines += ["", "Carried from the earlier results (trained and measured in an earlier session; its run "
                  "directories are gone with that checkout): " + "; ".join(f"{v} seeds {', '.join(seeds)}"
                                                                         for v, seeds in carried.items() if seeds)
                  + ". The other rows were measured from their run directories in this run of the script; wall "
                  "time and records/s compare only within one machine (a session's)."]
    lines += ["", "The head stage re-fits the related head at each L1 of its grid (read 3's recipe: 0.001/0.002) and "
              "keeps the "
              "best fold-9 macro AUROC among those whose called statements have median own share and top-3 coverage "
              ">= 0.5 (else the largest own share). A variant that redoes later stages counts the copied stages' wall "
              "time in its own. Records/s: `Classifier.predict_batch` on fold 9, measured on a quiet machine after "
              f"training. Python {doc['python']}, 1 thread per run, 2 shared cores (two runs at a time).", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["shipped", "push5", "morph9"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--label-sets", nargs="+", choices=sorted(TRUNK_BASELINES), default=["all"])
    ap.add_argument("--data", type=Path, default=em.DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--finished-only", action="store_true", help="train nothing: report the finished runs among those")
    ap.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json in --out")
    args = ap.parse_args()
    if args.render_only:
        write_text_atomic(args.out / "protoecgnet_variants.md",
                          render(json.loads((args.out / "protoecgnet_variants.json").read_text())))
        return 0
    import torch

    torch.set_num_threads(1)
    earlier = earlier_runs(args.out / "protoecgnet_variants.json")
    runs = []
    for ls, v, seed in itertools.product(args.label_sets, args.variants, args.seeds):
        if not args.finished_only or (run_dir(v, seed, ls) / "head" / "stage.json").is_file():
            out = run_dir(v, seed, ls) if args.finished_only else train(v, seed, ls, args.data)
            runs.append(facts(v, seed, ls, out, args.data))
        elif (v, ls, seed) in earlier:
            runs.append({**earlier[v, ls, seed], "carried": True})
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "protoecgnet_variants", "python": platform.python_version(), "variants": args.variants,
           "label_sets": args.label_sets, "seeds": args.seeds, "runs": runs}
    write_json_atomic(args.out / "protoecgnet_variants.json", doc)
    write_text_atomic(args.out / "protoecgnet_variants.md", render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
