"""ProtoECGNet checkpoints -> the shared ``Classifier`` (``LOADERS["protoecgnet"]``)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import ECGError
from ...preprocess import Pipeline
from ..classifier import Classifier
from .config import ProtoECGNetConfig
from .model import ProtoECGNet


class FusedLogits(nn.Module):
    """``ProtoECGNet`` seen as a plain (B, 12, T) -> (B, k) network: the fusion head's logits."""

    def __init__(self, net: ProtoECGNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).logits


def model_from_checkpoint(state: dict[str, torch.Tensor], config: dict[str, Any], path=None) -> ProtoECGNet:
    """The eval-mode ProtoECGNet of a checkpoint (no training data needed)."""
    try:
        model_config = ProtoECGNetConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ECGError(path, f"ProtoECGNet config is incomplete or invalid ({exc})") from exc
    model = ProtoECGNet(model_config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ECGError(path, f"weights do not fit the configured ProtoECGNet ({str(exc).splitlines()[0]})") from exc
    return model.eval()


def protoecgnet_from_checkpoint(state: dict[str, torch.Tensor], config: dict[str, Any], path=None,
                                device: str | torch.device | None = None) -> Classifier:
    """A Classifier over the checkpoint's fusion head (one 10-s window per record)."""
    model = model_from_checkpoint(state, config, path)
    try:
        pipeline = Pipeline.from_dict(config["pipeline"])
        labels = list(config["labels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ECGError(path, f"ProtoECGNet config lacks a valid pipeline or labels ({exc})") from exc
    cfg = model.config
    window_s = cfg.n_samples / cfg.sampling_rate
    return Classifier(FusedLogits(model), labels, pipeline, cfg.sampling_rate, window_s, window_s / 2, "max",
                      config=config, device=device)
