"""Training and validation splits of PTB-XL for any model family's training stages."""
from __future__ import annotations

import os
from typing import Sequence

from ..datasets import LABEL_SETS, PTBXL
from ..datasets.ptbxl import LabelledSplit
from ..errors import ECGError
from ..preprocess import Pipeline
from ..training import barrier, init_distributed


def load_train_val(data_root: str | os.PathLike, label_set: str, folds_train: Sequence[int], fold_val: int,
                   pipeline: Pipeline, sampling_rate: int = 100, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> tuple[PTBXL, LabelledSplit, LabelledSplit]:
    """The dataset and its cached training and validation splits; under torchrun rank 0 builds the cache
    while the other ranks wait, then open it."""
    if label_set not in LABEL_SETS:
        raise ECGError(None, f"unknown label set {label_set!r}; choose one of {', '.join(LABEL_SETS)}")
    if fold_val in folds_train:
        raise ECGError(None, f"validation fold {fold_val} is also a training fold")
    main = init_distributed().is_main
    ds = PTBXL(data_root, sampling_rate=sampling_rate)
    if not main:
        barrier()
    train = ds.load(label_set, tuple(folds_train), pipeline, cache_dir=cache_dir, progress=progress and main)
    val = ds.load(label_set, (fold_val,), pipeline, cache_dir=cache_dir, progress=progress and main)
    if main:
        barrier()
    return ds, train, val
