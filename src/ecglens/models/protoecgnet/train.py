"""Train ProtoECGNet on PTB-XL (``ecglens train protoecgnet``): the seven stages of ``stages``, or with
``--trunk BASELINE`` the five of ``trunk_stages`` on a trained baseline's body (how the shipped model was made).

The final checkpoint (weights, config with per-stage facts and wall times, gallery) is
``<out>/model`` with the recipe's ``head`` (default dense); ``<out>/model-<other>`` is the
same model with the other fusion head. ``resume`` skips finished stages and continues an
interrupted one.
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from ...datasets import TRAIN_FOLDS
from ...errors import ConfigError
from ...training import StageRunner, provenance, run_training, seed_everything
from .config import ProtoECGNetConfig
from .model import ProtoECGNet
from .options import (
    parse_head_l1,
    parse_prototype_counts,
    parse_prototype_seconds,
    parse_stage_epochs,
    parse_trunk_stages,
)
from .recipe import (
    ProtoTrainConfig,
    TrunkRecipe,
    branch_map_for,
    load_training_data,
    recipe_with_losses,
    recipe_with_prototypes,
    whole_record,
)
from .stages import ProtoStages
from .trunk_stages import TrunkStages, load_baseline, teacher_probabilities, trunk_network


def train_protoecgnet(
    data_root: str | os.PathLike,
    label_set: str = "all",
    out_dir: str | os.PathLike = "runs/protoecgnet",
    recipe: ProtoTrainConfig | None = None,
    folds_train: Sequence[int] = TRAIN_FOLDS,
    fold_val: int = 9,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    threads: int | None = 1,
    trunk_from: str | os.PathLike | None = None,
) -> Path:
    """Run all stages and save the final checkpoint to ``<out_dir>/model`` (returned).

    ``trunk_from`` (a trained baseline: checkpoint, run directory or shipped name) trains on that baseline's body
    and preprocessing instead, with ``recipe.trunk`` (``TrunkRecipe``'s defaults when it has none) and the five
    stages of ``trunk_stages``; the baseline must predict the same labels, trained on the same folds.
    Works under torchrun (the network stages use DDP; projection runs on every rank on
    the same data, so all ranks hold the same prototypes). ``threads`` sets torch's
    intra-op threads for the call (restored afterwards; None leaves them): the branches'
    small convolutions lose to OpenMP hand-offs, and on the shared 2-core machine one
    thread trained at 140-200 records/s against 15 with two.
    """
    recipe = recipe or ProtoTrainConfig()
    if trunk_from is not None and recipe.trunk is None:
        recipe = replace(recipe, trunk=TrunkRecipe())
    if recipe.trunk is not None and trunk_from is None:
        raise ConfigError("<ProtoTrainConfig>", "a trunk recipe trains on a baseline's body: give trunk_from")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _train(data_root, label_set, Path(out_dir), recipe, folds_train, fold_val, seed,
                      cache_dir, resume, progress, trunk_from)
    finally:
        torch.set_num_threads(previous)


def _train(data_root, label_set, out, recipe, folds_train, fold_val, seed, cache_dir, resume, progress,
           trunk_from) -> Path:
    baseline = None if trunk_from is None else load_baseline(trunk_from)
    data = load_training_data(recipe, data_root, label_set, folds_train, fold_val, cache_dir, progress,
                              pipeline=None if baseline is None else baseline.pipeline)
    labels = data.labels
    if baseline is not None and list(baseline.labels) != labels:
        raise ConfigError(trunk_from, f"the baseline predicts other labels than label set {label_set!r} "
                                      f"({len(baseline.labels)} against {len(labels)}): train both on the same set")
    seed_everything(seed)
    if baseline is None:
        model = ProtoECGNet(ProtoECGNetConfig(labels=tuple(labels), branch_map=branch_map_for(labels),
                                              branches=recipe.branches, sampling_rate=100.0, n_samples=1000))
    else:
        model = trunk_network(recipe, baseline, labels, data.train_y)
    base_config = {
        "kind": "protoecgnet",
        "model": model.config.to_dict(),
        "recipe": recipe.to_dict(),
        "pipeline": whole_record(data.pipeline).to_dict(),
        "display_pipeline": whole_record(recipe.display_pipeline(100.0)).to_dict(),
        "labels": labels,
        "label_set": label_set,
        "head": f"{recipe.head if baseline is None else 'related'} fusion",
        "training": provenance(
            seed, labels=labels, y=data.train_y, **data.facts,
            **({} if baseline is None else {"trunk_from": str(trunk_from)}),
            n_parameters=int(sum(p.numel() for p in model.parameters())),
            n_prototypes=int(sum(b.n_prototypes for b in model.branches.values())),
            branch_statements={n: [labels[i] for i in idx] for n, idx in model.config.branch_index.items()}),
    }
    stages = ProtoStages(model, recipe, data, base_config) if baseline is None else \
        TrunkStages(model, recipe, data, base_config, teacher_probabilities(baseline, data.train_x))
    t0 = time.perf_counter()
    facts = StageRunner(out, stages.declare(), model=model, resume=resume, seed=seed, progress=progress).run()
    return stages.save_final(out, facts, time.perf_counter() - t0)


def run(args: argparse.Namespace) -> int:
    """``ecglens train protoecgnet`` (options: ``protoecgnet.options``)."""
    trunk_only = (args.trunk_stages, args.distill, args.push_every, args.loop_l1, args.head_l1)
    if args.trunk is None and any(v is not None for v in trunk_only):
        raise ConfigError(None, "--trunk-stages, --distill, --push-every, --loop-l1 and --head-l1 set up training on "
                                "a baseline's body: give --trunk")
    trunk, epochs = None, parse_stage_epochs(args.epochs_per_stage, trunk=args.trunk is not None)
    if args.trunk is not None:
        given = {"epochs": epochs.pop("finetune_epochs", None), "refine_epochs": epochs.pop("refine_epochs", None),
                 "distill": args.distill, "push_every": args.push_every, "loop_l1": args.loop_l1,
                 "head_l1": None if args.head_l1 is None else parse_head_l1(args.head_l1),
                 "stages": None if args.trunk_stages is None else parse_trunk_stages(args.trunk_stages)}
        trunk = TrunkRecipe(**{key: value for key, value in given.items() if value is not None})
    recipe = recipe_with_losses(ProtoTrainConfig(max_records=args.max_records, head=args.head,
                                                 normalize=args.normalize, related_groups=args.related_groups,
                                                 trunk=trunk, **epochs), args.losses)
    recipe = recipe_with_prototypes(recipe, parse_prototype_counts(args.prototypes_per_class),
                                    parse_prototype_seconds(args.prototype_seconds))
    folds = tuple(f for f in TRAIN_FOLDS if f != args.val_fold)
    return run_training(lambda: train_protoecgnet(
        args.data, label_set=args.labels, out_dir=args.out, recipe=recipe, folds_train=folds, fold_val=args.val_fold,
        seed=args.seed, cache_dir=args.cache, resume=args.resume, progress=not args.no_progress,
        threads=args.threads, trunk_from=args.trunk))
