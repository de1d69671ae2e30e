"""Model checkpoints: a directory with ``model.safetensors`` (weights) and ``config.json``.

The config is everything needed to rebuild and use the model without training
data: ``kind`` (which model family loads it), the model configuration, the
preprocessing pipeline, the labels and the training facts. Writing is atomic
(``ecglens.atomic.atomic_dir``): the files go into a temporary sibling directory
that replaces the checkpoint as a whole, so a save killed at any point leaves the
previous checkpoint or none, never a half-written or mixed one. Loading refuses
(``ConfigError`` naming the file) a config that is not a JSON object, missing or
unreadable weights, and weights holding NaN or inf.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .. import __version__
from ..atomic import atomic_dir
from ..errors import ConfigError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "training_state.pt"


def _plain_state(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    # safetensors refuses shared or non-contiguous storage; a CPU copy of each tensor has neither.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _json_ready(obj: Any) -> Any:
    """Tuples to lists, numpy scalars/arrays to Python numbers/lists (so json.dump never fails late)."""
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def save_checkpoint(
    directory: str | os.PathLike,
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    extra_files: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (+ ``extra_files`` via torch.save) atomically.

    ``config`` must name the model family in ``kind``; ``ecglens_version`` and
    ``saved`` (UTC time) are added. An existing checkpoint at ``directory`` is
    replaced as a whole.
    """
    directory = Path(directory)
    if "kind" not in config:
        raise ConfigError(directory, "checkpoint config needs a 'kind' naming the model family")
    blob = json.dumps(
        _json_ready({**config, "ecglens_version": __version__,
                     "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}),
        indent=2,
    )
    with atomic_dir(directory) as tmp:
        # safetensors' own save_file creates its file owner-only; bytes written here get the usual mode
        (tmp / WEIGHTS_FILE).write_bytes(safetensors_bytes(_plain_state(model_or_state)))
        (tmp / CONFIG_FILE).write_text(blob + "\n")
        for name, obj in (extra_files or {}).items():
            torch.save(obj, tmp / name)
    return directory


def load_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint directory (``ConfigError`` naming it if absent or invalid)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(directory, "no such checkpoint directory")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(directory, f"not a checkpoint: {CONFIG_FILE} is missing")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(directory, f"{CONFIG_FILE} is unreadable or not JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ConfigError(directory, f"{CONFIG_FILE} holds a JSON {type(config).__name__}, not an object of settings")
    if "kind" not in config:
        raise ConfigError(directory, f"{CONFIG_FILE} does not name the model 'kind'")
    return config


def load_checkpoint(directory: str | os.PathLike,
                    device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, config)`` from a checkpoint directory; needs no training data.

    Weights holding NaN or inf are refused: a model with them scores ``nan``,
    which would otherwise pass for a result.
    """
    directory = Path(directory)
    config = load_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(directory, f"not a checkpoint: {WEIGHTS_FILE} is missing")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(directory, f"{WEIGHTS_FILE} is corrupt or unreadable ({exc})") from exc
    for name, tensor in state.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ConfigError(directory, f"{WEIGHTS_FILE}: tensor {name!r} holds {bad} NaN or inf value(s) "
                                             f"of {tensor.numel()}")
    return state, config


def weights_digest(directory: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's weights file: names exactly which weights a dependent model was built on."""
    path = Path(directory) / WEIGHTS_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(path, f"cannot read the weights ({exc.strerror or exc})") from exc


def load_extra(directory: str | os.PathLike, name: str) -> Any:
    """A file written through ``save_checkpoint(extra_files=...)``, loaded with ``weights_only=True``."""
    path = Path(directory) / name
    if not path.is_file():
        raise ConfigError(directory, f"{name} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged pickle
        raise ConfigError(directory, f"{name} is corrupt or unreadable ({exc})") from exc
