"""Train the baseline on PTB-XL through the shared Trainer (``ecglens train baseline``)."""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ... import __version__
from ...datasets import LABEL_SETS, TRAIN_FOLDS, jaccard_cooccurrence
from ...metrics import macro_auroc
from ...preprocess import Pipeline, Scale
from ...training import Trainer, Validation, cleanup, init_distributed, seed_everything
from ..classifier import windowed_probabilities
from ..splits import load_train_val
from .config import RECIPES, BaselineConfig, get_recipe
from .xresnet1d import XResNet1d

log = logging.getLogger(__name__)


class RecordDataset(Dataset):
    """``(signal, labels)`` items from preprocessed (n, 12, t) signals.

    ``transform`` is applied per item (the fitted ``Scale`` of the benchmark
    recipe, so the cache holds unscaled signals). With ``train=True`` each item
    is a random ``window``-sample crop, shifted by up to ``max_shift`` samples
    (zero fill); otherwise the whole record is returned. Randomness comes from
    torch's generator, which the trainer seeds and checkpoints.
    """

    def __init__(self, signals: np.ndarray, y: np.ndarray, sampling_rate: float, window: int, train: bool,
                 max_shift: int = 0, transform: Pipeline | None = None):
        self.signals, self.y = signals, np.asarray(y, dtype=np.float32)
        self.sampling_rate, self.window, self.train = sampling_rate, int(window), train
        self.max_shift, self.transform = int(max_shift), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = np.array(self.signals[i], dtype=np.float32)
        if self.transform is not None:
            x = self.transform.apply_signal(x, self.sampling_rate)[0]
        if self.train:
            x = self._augment(x)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(self.y[i])

    def _augment(self, x: np.ndarray) -> np.ndarray:
        t = x.shape[-1]
        if t > self.window:
            start = int(torch.randint(0, t - self.window + 1, ()).item())
            x = x[:, start:start + self.window]
        elif t < self.window:
            x = np.pad(x, ((0, 0), (0, self.window - t)))
        if self.max_shift:
            shift = int(torch.randint(-self.max_shift, self.max_shift + 1, ()).item())
            out = np.zeros_like(x)
            if shift >= 0:
                out[:, shift:] = x[:, :x.shape[-1] - shift]
            else:
                out[:, :shift] = x[:, -shift:]
            x = out
        return x


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
    ``train_log.jsonl``. ``sampling_rate`` picks the PTB-XL source files (100 or
    500 Hz); the recipe's pipeline resamples to its own rate. ``max_records``
    keeps the first N training and validation records (for tests).
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

    prevalence = train_y.mean(axis=0) if len(train_y) else np.zeros(len(labels))
    config: dict[str, Any] = {
        "kind": "baseline",
        "model": cfg.model.to_dict(),
        "recipe": cfg.to_dict(),
        "pipeline": pipeline.to_dict(),
        "labels": labels,
        "label_set": label_set,
        "training": {
            "data": ds.identity(), "source_rate": sampling_rate, "folds": [int(f) for f in folds_train],
            "fold_val": int(fold_val), "n_train": int(len(train_ids)), "n_val": int(len(val_ids)), "seed": int(seed),
            "max_records": max_records,
            "skipped": {"count": len(train_split.skipped) + len(val_split.skipped),
                        "records": [[int(i), r] for i, r in train_split.skipped + val_split.skipped]},
            "label_prevalence": dict(zip(labels, (float(p) for p in prevalence))),
            "label_cooccurrence": jaccard_cooccurrence(train_y).round(6).tolist(),
            "ecglens_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
    trainer = Trainer(model, loss_fn, train_data, cfg.train_config(seed, progress),
                      validation=Validation(val_data, outputs, metric, name="val_macro_auroc", mode="max"),
                      run_dir=out_dir, checkpoint_config=config)
    return trainer.fit_and_save(out_dir / "model", resume=resume)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train baseline``."""
    parser.add_argument("--data", required=True, metavar="DIR", help="PTB-XL root (ptbxl_database.csv, records100/)")
    parser.add_argument("--labels", default="all", choices=LABEL_SETS, help="label set (default all)")
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES),
                        help="training recipe (default: ours; ptbxl-benchmark: Strodthoff et al. 2021)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="run directory: last/, best/, train_log.jsonl; the final model goes to RUN_DIR/model")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--patience", type=int, metavar="N",
                        help="early stopping: stop after N epochs without a better validation macro AUROC and keep "
                             "the best epoch (default: the recipe's; ours trains the whole schedule, final model)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last epoch")
    parser.add_argument("--cache", metavar="DIR", help="signal cache directory (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    parser.add_argument("--rate", type=int, default=100, choices=(100, 500), help="PTB-XL source files (default 100 Hz)")
    parser.add_argument("--val-fold", type=int, default=9,
                        help="validation fold (default 9); training uses folds 1-8 other than it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines are still logged)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folds = tuple(f for f in TRAIN_FOLDS if f != args.val_fold)
    main = init_distributed().is_main
    recipe = get_recipe(args.recipe)
    if args.patience is not None:
        recipe = replace(recipe, select="best", patience=args.patience)
    try:
        path = train_baseline(args.data, label_set=args.labels, recipe=recipe, out_dir=args.out,
                              folds_train=folds, fold_val=args.val_fold, seed=args.seed, epochs=args.epochs,
                              cache_dir=args.cache, resume=args.resume, sampling_rate=args.rate,
                              progress=not args.no_progress)
    finally:
        cleanup()
    if main:
        print(path)
    return 0
