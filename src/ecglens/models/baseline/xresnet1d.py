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

from dataclasses import dataclass

import torch
from torch import nn

from ...configs import config_from_dict, config_to_dict
from .. import layout

# name -> (expansion, layers), as in the ResNet family.
ARCHITECTURES: dict[str, tuple[int, tuple[int, ...]]] = {
    "xresnet1d18": (1, (2, 2, 2, 2)),
    "xresnet1d34": (1, (3, 4, 6, 3)),
    "xresnet1d50": (4, (3, 4, 6, 3)),
    "xresnet1d101": (4, (3, 4, 23, 3)),
}


@dataclass(frozen=True)
class XResNetConfig:
    """Architecture of an :class:`XResNet1d` (serialised into checkpoints).

    ``widths`` are the inner widths of the stages; a stage outputs
    ``width * expansion`` channels. ``stem`` lists the stem's three output widths.
    ``head_hidden=None`` maps the pooled features straight to the classes.
    """

    layers: tuple[int, ...] = (3, 4, 23, 3)
    expansion: int = 4
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: tuple[int, ...] = (32, 32, 64)
    kernel_size: int = 5
    in_channels: int = 12
    head_hidden: int | None = 128
    head_dropout: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        object.__setattr__(self, "stem", tuple(int(v) for v in self.stem))
        if len(self.layers) != len(self.widths) or not self.layers:
            raise ValueError(f"layers {self.layers} and widths {self.widths} must be non-empty and of equal length")
        if min(self.layers + self.widths + self.stem) < 1 or self.in_channels < 1:
            raise ValueError(f"layer counts and widths must be positive, got layers {self.layers}, widths "
                             f"{self.widths}, stem {self.stem}")
        if len(self.stem) != 3:
            raise ValueError(f"the stem has three convolutions, got widths {self.stem}")
        if self.expansion not in (1, 4):
            raise ValueError(f"expansion must be 1 (basic) or 4 (bottleneck), got {self.expansion}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    @classmethod
    def named(cls, name: str, **changes) -> "XResNetConfig":
        """A config for a named depth (``xresnet1d18/34/50/101``) with optional changes."""
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
        expansion, layers = ARCHITECTURES[name]
        return cls(layers=layers, expansion=expansion, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "XResNetConfig":
        return config_from_dict(cls, d)

    def to_dict(self) -> dict:
        return config_to_dict(self)


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


class XResNet1d(nn.Module):
    """(n, in_channels, t) -> (n, n_classes) logits, for any ``t`` (global pooling).

    ``features`` is the convolutional body; ``head`` maps the pooled features to logits.
    """

    def __init__(self, n_classes: int, config: XResNetConfig | None = None):
        super().__init__()
        cfg = config or XResNetConfig()
        self.config = cfg
        self.n_classes = int(n_classes)
        k = cfg.kernel_size
        sizes = (cfg.in_channels, *cfg.stem)
        stem = [_conv_bn(sizes[i], sizes[i + 1], k, stride=2 if i == 0 else 1) for i in range(3)]
        body: list[nn.Module] = [*stem, layout.MaxPool1d(3, stride=2, padding=1)]
        ni = cfg.stem[-1]
        for stage, (n_blocks, width) in enumerate(zip(cfg.layers, cfg.widths)):
            for b in range(n_blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                body.append(ResBlock(ni, width, cfg.expansion, stride, k))
                ni = width * cfg.expansion
        self.features = nn.Sequential(*body)
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
