"""Train the baseline on PTB-XL (``ecglens train baseline``): one stage, in the run directory itself."""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...datasets import TRAIN_FOLDS, jaccard_cooccurrence
from ...metrics import macro_auroc
from ...preprocess import Pipeline, Scale
from ...training import (
    RecordDataset,
    Stage,
    StageRunner,
    Validation,
    provenance,
    run_training,
    save_checkpoint,
    seed_everything,
    skipped_facts,
)
from ..classifier import windowed_probabilities
from ..splits import load_train_val
from .config import BaselineConfig, get_recipe
from ..xresnet1d import XResNet1d

STAGE = "baseline"


def positive_weights(y: np.ndarray, mode: str, cap: float = 10.0) -> torch.Tensor | None:
    """Per-label BCE ``pos_weight``: None for ``'none'``; sqrt(neg/pos) in [1, cap] for ``'sqrt'``."""
    if mode == "none":
        return None
    pos = y.sum(axis=0)
    neg = len(y) - pos
    w = np.where(pos > 0, np.sqrt(neg / np.maximum(pos, 1.0)), 1.0)
    return torch.as_tensor(np.clip(w, 1.0, cap), dtype=torch.float32)


def train_baseline(
    data_root: str | os.PathLike,
    label_set: str = "all",
    recipe: str | BaselineConfig = "default",
    out_dir: str | os.PathLike = "runs/baseline",
    folds_train: Sequence[int] = TRAIN_FOLDS,
    fold_val: int = 9,
    seed: int = 0,
    epochs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    resume: bool = False,
    max_records: int | None = None,
    sampling_rate: int = 100,
    progress: bool = True,
) -> Path:
    """Train a baseline and save it to ``<out_dir>/model`` (returned); works under torchrun.

    ``out_dir`` also holds the trainer's ``last/``, ``best/`` and
    ``train_log.jsonl`` and, once finished, ``stage.json``. ``sampling_rate``
    picks the PTB-XL source files (100 or 500 Hz); the recipe's pipeline
    resamples to its own rate. ``max_records`` keeps the first N training and
    validation records (for tests).
    """
    cfg = recipe if isinstance(recipe, BaselineConfig) else get_recipe(recipe)
    if epochs is not None:
        cfg = replace(cfg, epochs=int(epochs))
    out_dir = Path(out_dir)
    base = cfg.base_pipeline()
    ds, train_split, val_split = load_train_val(data_root, label_set, folds_train, fold_val, base,
                                                sampling_rate=sampling_rate, cache_dir=cache_dir, progress=progress)
    train_ids, train_x, train_y = train_split.arrays(max_records)
    val_ids, val_x, val_y = val_split.arrays(max_records)
    rate = train_split.sampling_rate
    labels = list(train_split.label_names)

    transform = None
    pipeline = base
    if cfg.preprocessing == "scale":
        transform = Pipeline((Scale.fit(train_x[i] for i in range(len(train_x))),))
        pipeline = base.then(*transform.steps)

    window = int(round(cfg.train_window_s * rate))
    train_data = RecordDataset(train_x, train_y, rate, window, train=True,
                               max_shift=int(round(cfg.max_shift_s * rate)), transform=transform)
    val_data = RecordDataset(val_x, val_y, rate, window, train=False, transform=transform)

    seed_everything(seed)
    model = XResNet1d(len(labels), cfg.model)
    pos_weight = positive_weights(train_y, cfg.pos_weight)
    eval_window = int(round(cfg.window_s * rate))
    eval_stride = max(1, int(round(cfg.stride_s * rate)))

    def loss_fn(net: nn.Module, batch) -> tuple[torch.Tensor, dict[str, Any]]:
        x, y = batch
        pw = None if pos_weight is None else pos_weight.to(x.device)
        return nn.functional.binary_cross_entropy_with_logits(net(x), y, pos_weight=pw), {}

    def outputs(net: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"score": windowed_probabilities(net, x, eval_window, eval_stride, cfg.aggregate), "target": y}

    def metric(arrays: dict[str, np.ndarray]) -> dict[str, float]:
        value, n_scored = macro_auroc(arrays["target"], arrays["score"])
        return {"val_macro_auroc": value, "val_labels_scored": float(n_scored)}

    config: dict[str, Any] = {
        "kind": "baseline",
        "model": cfg.model.to_dict(),
        "recipe": cfg.to_dict(),
        "pipeline": pipeline.to_dict(),
        "labels": labels,
        "label_set": label_set,
        "training": provenance(
            seed, ds.identity(), labels, train_y, source_rate=sampling_rate, folds=[int(f) for f in folds_train],
            fold_val=int(fold_val), n_train=int(len(train_ids)), n_val=int(len(val_ids)), max_records=max_records,
            skipped=skipped_facts(train_split.skipped + val_split.skipped),
            label_cooccurrence=jaccard_cooccurrence(train_y).round(6).tolist()),
    }
    train_config = cfg.train_config(seed, progress)

    def trains(run) -> nn.Module:
        return model  # every parameter trains (the runner is given no model to freeze)

    def fit(run) -> dict[str, Any]:
        result = run.fit(loss_fn, train_data, run.train_config(train_config), checkpoint_config=config,
                         validation=Validation(val_data, outputs, metric, name="val_macro_auroc", mode="max"))
        return {k: v for k, v in result.facts.items() if k != "stage"}

    def save(run) -> None:
        config["training"].update(run.facts[STAGE])
        save_checkpoint(out_dir / "model", model, config)

    stage = Stage(STAGE, fit, trains=trains, epochs=train_config.epochs, lr=train_config.lr,
                  select=train_config.select, patience=train_config.patience, save=save, directory="")
    StageRunner(out_dir, [stage], resume=resume, seed=seed, progress=progress).run()
    return out_dir / "model"


def run(args: argparse.Namespace) -> int:
    """``ecglens train baseline`` (options: ``baseline.options``)."""
    recipe = get_recipe(args.recipe)
    if args.patience is not None:
        recipe = replace(recipe, select="best", patience=args.patience)
    folds = tuple(f for f in TRAIN_FOLDS if f != args.val_fold)
    return run_training(lambda: train_baseline(
        args.data, label_set=args.labels, recipe=recipe, out_dir=args.out, folds_train=folds, fold_val=args.val_fold,
        seed=args.seed, epochs=args.epochs, cache_dir=args.cache, resume=args.resume, sampling_rate=args.rate,
        progress=not args.no_progress))
