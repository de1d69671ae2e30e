"""ProtoECGNet checkpoints -> the shared ``Classifier`` (the loader its family declares)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...preprocess import Pipeline
from ..classifier import Classifier
from ..loading import config_section, config_value, fit_weights
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
    model_config = config_section(config, "model", ProtoECGNetConfig, path)
    return fit_weights(ProtoECGNet(model_config), state, path, "ProtoECGNet").eval()


def protoecgnet_from_checkpoint(state: dict[str, torch.Tensor], config: dict[str, Any], path=None,
                                device: str | torch.device | None = None) -> Classifier:
    """A Classifier over the checkpoint's fusion head: 10-s windows (``n_samples``) every
    ``ProtoECGNet.window_stride`` samples, each statement scored by its highest-logit window ("max").
    A pipeline that fixes the length (older checkpoints: ``fix_length 10 s``) leaves one window."""
    model = model_from_checkpoint(state, config, path)
    pipeline = config_value(config, "pipeline", path, Pipeline.from_dict)
    labels = config_value(config, "labels", path, list)
    cfg = model.config
    return Classifier(FusedLogits(model), labels, pipeline, cfg.sampling_rate, cfg.n_samples / cfg.sampling_rate,
                      model.window_stride / cfg.sampling_rate, "max", config=config, device=device, source=path)
