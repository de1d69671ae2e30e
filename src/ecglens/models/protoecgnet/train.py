"""Train ProtoECGNet on PTB-XL (``ecglens train protoecgnet``): the seven stages of ``stages``.

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
from pathlib import Path

import torch

from ...datasets import TRAIN_FOLDS
from ...training import StageRunner, provenance, run_training, seed_everything
from .config import ProtoECGNetConfig
from .model import ProtoECGNet
from .options import parse_stage_epochs
from .recipe import ProtoTrainConfig, branch_map_for, load_training_data, recipe_with_losses, whole_record
from .stages import ProtoStages


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
) -> Path:
    """Run all seven stages and save the final checkpoint to ``<out_dir>/model`` (returned).

    Works under torchrun (the network stages use DDP; projection runs on every rank on
    the same data, so all ranks hold the same prototypes). ``threads`` sets torch's
    intra-op threads for the call (restored afterwards; None leaves them): the branches'
    small convolutions lose to OpenMP hand-offs, and on the shared 2-core machine one
    thread trained at 140-200 records/s against 15 with two.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _train(data_root, label_set, Path(out_dir), recipe or ProtoTrainConfig(), folds_train, fold_val, seed,
                      cache_dir, resume, progress)
    finally:
        torch.set_num_threads(previous)


def _train(data_root, label_set, out, recipe, folds_train, fold_val, seed, cache_dir, resume, progress) -> Path:
    data = load_training_data(recipe, data_root, label_set, folds_train, fold_val, cache_dir, progress)
    labels = data.labels
    seed_everything(seed)
    model_config = ProtoECGNetConfig(labels=tuple(labels), branch_map=branch_map_for(labels),
                                     branches=recipe.branches, sampling_rate=100.0, n_samples=1000)
    model = ProtoECGNet(model_config)
    base_config = {
        "kind": "protoecgnet",
        "model": model_config.to_dict(),
        "recipe": recipe.to_dict(),
        "pipeline": whole_record(data.pipeline).to_dict(),
        "display_pipeline": whole_record(recipe.display_pipeline(100.0)).to_dict(),
        "labels": labels,
        "label_set": label_set,
        "head": f"{recipe.head} fusion",
        "training": provenance(
            seed, labels=labels, y=data.train_y, **data.facts,
            n_parameters=int(sum(p.numel() for p in model.parameters())),
            n_prototypes=int(sum(b.n_prototypes for b in model.branches.values())),
            branch_statements={n: [labels[i] for i in idx] for n, idx in model_config.branch_index.items()}),
    }
    stages = ProtoStages(model, recipe, data, base_config)
    t0 = time.perf_counter()
    facts = StageRunner(out, stages.declare(), model=model, resume=resume, seed=seed, progress=progress).run()
    return stages.save_final(out, facts, time.perf_counter() - t0)


def run(args: argparse.Namespace) -> int:
    """``ecglens train protoecgnet`` (options: ``protoecgnet.options``)."""
    recipe = recipe_with_losses(ProtoTrainConfig(max_records=args.max_records, head=args.head,
                                                 normalize=args.normalize, related_groups=args.related_groups,
                                                 **parse_stage_epochs(args.epochs_per_stage)),
                                args.losses)
    folds = tuple(f for f in TRAIN_FOLDS if f != args.val_fold)
    return run_training(lambda: train_protoecgnet(
        args.data, label_set=args.labels, out_dir=args.out, recipe=recipe, folds_train=folds, fold_val=args.val_fold,
        seed=args.seed, cache_dir=args.cache, resume=args.resume, progress=not args.no_progress,
        threads=args.threads))
