"""XResNet1d: the "bag of tricks" ResNet (He et al. 2019) for 1-D signals.

The tweaks over a plain ResNet, as used for ECGs by Strodthoff et al. (2021):

* a stem of three convolutions (the first strided) instead of one wide one,
  followed by max pooling;
* ResNet-D shortcuts: a downsampling shortcut average-pools first and then
  applies a 1x1 convolution, so it sees every input sample;
* the last batch norm of each residual branch starts with zero scale, so every
  block starts as (close to) the identity and deep nets train from step one;
* a head that concatenates adaptive average and max pooling, then batch norm,
  dropout and linear layers.

``layers`` sets the number of blocks per stage, ``expansion`` chooses basic
(1) or bottleneck (4) blocks and ``widths`` the per-stage width, so the same
class builds xresnet1d18/34/50/101 and narrower variants.

At inference the body runs channels-last (``ecglens.models.layout``: the (n, c, t) map as
(n, c, 1, t)), oneDNN's faster CPU layout; the output is the same.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import layout
from .config import XResNetConfig


def _conv_bn(ni: int, nf: int, kernel_size: int, stride: int = 1, act: bool = True, zero_bn: bool = False) -> nn.Sequential:
    conv = layout.Conv1d(ni, nf, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    bn = layout.BatchNorm1d(nf)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    nn.init.zeros_(bn.bias)
    return nn.Sequential(conv, bn, nn.ReLU(inplace=True)) if act else nn.Sequential(conv, bn)


class ResBlock(nn.Module):
    """Basic (two k-convs) or bottleneck (1x1, k, 1x1) residual block with a ResNet-D shortcut."""

    def __init__(self, ni: int, width: int, expansion: int, stride: int, kernel_size: int):
        super().__init__()
        nf = width * expansion
        if expansion == 1:
            self.branch = nn.Sequential(
                _conv_bn(ni, width, kernel_size, stride),
                _conv_bn(width, nf, kernel_size, act=False, zero_bn=True),
            )
        else:
            self.branch = nn.Sequential(
                _conv_bn(ni, width, 1),
                _conv_bn(width, width, kernel_size, stride),
                _conv_bn(width, nf, 1, act=False, zero_bn=True),
            )
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(layout.AvgPool1d(stride, ceil_mode=True))
        if ni != nf:
            shortcut.append(_conv_bn(ni, nf, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x).add_(self.shortcut(x)))  # in place: one map less to allocate


class AdaptiveConcatPool1d(nn.Module):
    """Global average and max pooling side by side: (n, c, t) or (n, c, 1, t) -> (n, 2c)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layout.as_1d(x)
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)


def _block_strides(cfg: XResNetConfig) -> list[tuple[int, int]]:
    """(stage, stride) of every residual block: the first block of each stage after the first halves time."""
    return [(stage, 2 if (stage > 0 and b == 0) else 1)
            for stage, n_blocks in enumerate(cfg.layers) for b in range(n_blocks)]


def xresnet_body(cfg: XResNetConfig) -> tuple[nn.Sequential, int]:
    """The convolutional body (three-conv stem, max pool, residual stages) and its output channels."""
    k = cfg.kernel_size
    sizes = (cfg.in_channels, *cfg.stem)
    body: list[nn.Module] = [_conv_bn(sizes[i], sizes[i + 1], k, stride=2 if i == 0 else 1) for i in range(3)]
    body.append(layout.MaxPool1d(3, stride=2, padding=1))
    ni = cfg.stem[-1]
    for stage, stride in _block_strides(cfg):
        body.append(ResBlock(ni, cfg.widths[stage], cfg.expansion, stride, k))
        ni = cfg.widths[stage] * cfg.expansion
    return nn.Sequential(*body), ni


def xresnet_time_layers(cfg: XResNetConfig) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) along time of every layer on the body's main path (stem, pool, each block's
    residual branch), from which the receptive field of a feature step follows."""
    k, pad = cfg.kernel_size, cfg.kernel_size // 2
    layers = [(k, 2, pad), (k, 1, pad), (k, 1, pad), (3, 2, 1)]
    for _, stride in _block_strides(cfg):
        if cfg.expansion == 1:
            layers += [(k, stride, pad), (k, 1, pad)]
        else:
            layers += [(1, 1, 0), (k, stride, pad), (1, 1, 0)]
    return layers


def xresnet_stage_ends(cfg: XResNetConfig) -> list[tuple[int, int, int]]:
    """For each residual stage (in order): the number of body modules up to its end (stem and pool included),
    the number of ``xresnet_time_layers`` up to its end, and its output channels."""
    per_block = 2 if cfg.expansion == 1 else 3
    ends, blocks = [], 0
    for stage, n_blocks in enumerate(cfg.layers):
        blocks += n_blocks
        ends.append((4 + blocks, 4 + per_block * blocks, cfg.widths[stage] * cfg.expansion))
    return ends


class XResNet1d(nn.Module):
    """(n, in_channels, t) -> (n, n_classes) logits, for any ``t`` (global pooling).

    ``features`` is the convolutional body; ``head`` maps the pooled features to logits.
    """

    def __init__(self, n_classes: int, config: XResNetConfig | None = None):
        super().__init__()
        cfg = config or XResNetConfig()
        self.config = cfg
        self.n_classes = int(n_classes)
        self.features, ni = xresnet_body(cfg)
        self.n_features = ni
        head: list[nn.Module] = [AdaptiveConcatPool1d(), nn.BatchNorm1d(2 * ni)]
        if cfg.head_hidden:
            head += [nn.Dropout(cfg.head_dropout / 2), nn.Linear(2 * ni, cfg.head_hidden), nn.ReLU(inplace=True),
                     nn.BatchNorm1d(cfg.head_hidden)]
            ni_head = cfg.head_hidden
        else:
            ni_head = 2 * ni
        head += [nn.Dropout(cfg.head_dropout), nn.Linear(ni_head, self.n_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(layout.channels_last_1d(x)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
