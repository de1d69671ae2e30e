"""Checkpoint directory -> loaded model, whatever its family (through ``models.registry``).

A checkpoint is a directory with ``model.safetensors`` and ``config.json``
whose ``kind`` names the family declaration that loads it. The helpers here
are the one place where a config section is parsed and weights are fitted to
a module, so every family reports a bad checkpoint the same way: a
``ConfigError`` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from ..configs import config_from_dict
from ..errors import ConfigError
from ..pretrained import pretrained_dir
from .registry import CheckpointKind, get_kind, resolve

CONFIG_FILE = "config.json"
T = TypeVar("T")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory, a training run directory (its final model is ``<run>/model``), or the
    name of a pretrained model shipped with ecglens (``ecglens.list_models()``)."""
    p = Path(path)
    if not p.exists() and pretrained_dir(str(path)) is not None:
        return pretrained_dir(str(path))
    if not (p / CONFIG_FILE).is_file() and (p / "model" / CONFIG_FILE).is_file():
        return p / "model"
    return p


def config_section(config: dict[str, Any], key: str, cls: type[T], path=None) -> T:
    """``config[key]`` rebuilt as the dataclass ``cls``; ``ConfigError`` naming ``path`` if absent or invalid."""
    if key not in config:
        raise ConfigError(path, f"config has no {key!r} section")
    return config_from_dict(cls, config[key], path)


def config_value(config: dict[str, Any], key: str, path=None, convert=None):
    """``config[key]`` (passed through ``convert``); ``ConfigError`` naming ``path`` if absent or invalid."""
    if key not in config:
        raise ConfigError(path, f"config has no {key!r} entry")
    try:
        return config[key] if convert is None else convert(config[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(path, f"config entry {key!r} is invalid ({exc})") from exc


def fit_weights(module, state: dict, path=None, what: str = "model"):
    """Load ``state`` into ``module`` (returned); ``ConfigError`` naming ``path`` when the weights do not fit."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(path, f"weights do not fit the configured {what} ({str(exc).splitlines()[0]})") from exc
    return module


def load_any(path: str | os.PathLike, device=None) -> tuple[Any, CheckpointKind, Path]:
    """``(loaded object, its kind's declaration, checkpoint directory)`` for any registered kind."""
    from ..training.checkpoint import load_checkpoint

    directory = resolve_checkpoint(path)
    state, config = load_checkpoint(directory)
    kind = get_kind(config.get("kind"), directory / CONFIG_FILE)
    return resolve(kind.load)(state, config, directory, device=device), kind, directory


def load_classifier(path: str | os.PathLike, device=None):
    """The ``Classifier`` saved at ``path`` (checkpoint, run directory or shipped name), whatever its family."""
    obj, kind, directory = load_any(path, device)
    if not kind.predicts:
        raise ConfigError(directory, f"a {kind.name} checkpoint does not predict; {kind.instead}")
    return obj
