"""Trained models behind one interface: ``load_classifier(path) -> Classifier``.

``LOADERS`` maps a checkpoint's ``config["kind"]`` to the function that rebuilds
its Classifier from ``(state_dict, config, path, device)``; each model family
adds its entry here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from ..errors import ECGError
from ..pretrained import pretrained_dir
from ..training.checkpoint import CONFIG_FILE, load_checkpoint
from .baseline.config import classifier_from_checkpoint as _baseline_classifier
from .factorecg import classifier as _factorecg
from .protoecgnet.classifier import protoecgnet_from_checkpoint as _protoecgnet_classifier
from .classifier import AGGREGATES, Classifier, make_windows, window_starts, windowed_probabilities

LOADERS: dict[str, Callable[..., Classifier]] = {
    "baseline": _baseline_classifier,
    "factorecg": _factorecg.factorecg_from_checkpoint, "beat-blackbox": _factorecg.blackbox_from_checkpoint,
    "protoecgnet": _protoecgnet_classifier,
}


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory, a training run directory (its final model is ``<run>/model``), or the
    name of a pretrained model shipped with ecglens (``ecglens.pretrained.list_pretrained()``)."""
    p = Path(path)
    if not p.exists() and pretrained_dir(str(path)) is not None:
        return pretrained_dir(str(path))
    if not (p / CONFIG_FILE).is_file() and (p / "model" / CONFIG_FILE).is_file():
        return p / "model"
    return p


def load_classifier(path: str | os.PathLike, device: str | torch.device | None = None) -> Classifier:
    """The Classifier saved at ``path`` (a checkpoint or run directory), whatever its model family."""
    directory = resolve_checkpoint(path)
    state, config = load_checkpoint(directory)
    kind = config.get("kind")
    if kind not in LOADERS:
        raise ECGError(directory, f"no loader for model kind {kind!r}; known: {', '.join(sorted(LOADERS))}")
    return LOADERS[kind](state, config, directory, device=device)


__all__ = ["AGGREGATES", "Classifier", "LOADERS", "load_classifier", "make_windows", "resolve_checkpoint",
           "window_starts", "windowed_probabilities"]
