"""Small CPU-friendly ResNet-style backbones and their time geometry.

The paper used an ImageNet-pretrained 2D ResNet-18; we cannot download weights and the
whole pipeline must train on two CPU cores in minutes, so the backbones are small residual
stacks trained from scratch:

- ``Backbone1d`` (rhythm): leads are channels, convolutions run over time.
- ``Backbone2d`` (morphology, global): the record is a 1-channel image (leads x time).
  Blocks convolve (3 x k) across neighbouring leads and time, then (1 x k) over time.
  Strides in time set the latent resolution; optional strides across leads shrink the
  12 lead rows to a few (cheaper, at the price of coarser lead specificity).
- ``Trunk``: instead, one xresnet1d body shared by the branches (each reads it through a
  ``TrunkTap``), so it can start from a trained black box's weights.

Every convolution on the main path is recorded as (kernel, stride, padding) along time,
so ``time_geometry`` gives exactly which input samples each latent step sees and
``window_input_span`` maps a latent window back to input samples.

At inference both run their convolutions channels-last (``ecglens.models.layout``), two to
three times faster on a CPU than NCHW at these few channels, with each batch norm folded into
the convolution before it (``layout.conv_bn``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ...errors import ECGError
from .. import layout
from ..xresnet1d.config import XResNetConfig
from ..xresnet1d.network import xresnet_body, xresnet_stage_ends, xresnet_time_layers


@dataclass(frozen=True)
class TimeGeometry:
    """Latent-to-input mapping along time.

    Latent step t sees input samples ``[start + t*stride, start + t*stride + receptive_field)``
    (``start`` is negative when padding is involved); its centre is the middle of that range.
    """

    stride: int
    receptive_field: int
    start: int

    def center(self, t: float) -> float:
        return self.start + t * self.stride + (self.receptive_field - 1) / 2


def compose_time_geometry(layers: Sequence[tuple[int, int, int]]) -> TimeGeometry:
    """Geometry of a chain of (kernel, stride, padding) convolutions/pools (dilation 1)."""
    jump, field, start = 1, 1, 0
    for kernel, stride, padding in layers:
        field += (kernel - 1) * jump
        start -= padding * jump
        jump *= stride
    return TimeGeometry(stride=jump, receptive_field=field, start=start)


def window_input_span(window_start: int, window_length: int, geometry: TimeGeometry, n_samples: int,
                      mode: str = "footprint") -> tuple[int, int]:
    """Input samples ``[start, end)`` covered by latent steps ``[window_start, window_start+window_length)``.

    ``mode="footprint"``: the samples the window's steps stand for, i.e. from half a stride
    before the first step's centre to half a stride after the last one's
    (``window_length * stride`` samples; a 6-step window at stride 16 is 96 samples, ~1 s
    at 100 Hz). ``mode="receptive_field"``: every sample that can influence the window
    (wider; deep CNNs see far). Both are clipped to ``[0, n_samples)``.
    """
    if window_length < 1:
        raise ECGError(None, f"window_length must be >= 1, got {window_length}")
    if mode == "footprint":
        lo = math.floor(geometry.center(window_start) - geometry.stride / 2 + 0.5)
        hi = lo + window_length * geometry.stride
    elif mode == "receptive_field":
        lo = geometry.start + window_start * geometry.stride
        hi = lo + (window_length - 1) * geometry.stride + geometry.receptive_field
    else:
        raise ECGError(None, f"mode must be 'footprint' or 'receptive_field', got {mode!r}")
    return max(0, min(lo, n_samples)), max(0, min(hi, n_samples))


class _ResBlock(nn.Module):
    """conv1-bn1-ReLU, conv2-bn2, plus the shortcut, ReLU; batch norms folded at inference (``layout.conv_bn``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu_(layout.conv_bn(self.conv1, self.bn1, x))  # in place: one map less to allocate and write
        skip = x if isinstance(self.shortcut, nn.Identity) else layout.conv_bn(*self.shortcut, x)
        return torch.relu_(layout.conv_bn(self.conv2, self.bn2, y).add_(skip))


class _ResBlock1d(_ResBlock):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        pad = kernel // 2
        self.conv1 = layout.Conv1d(cin, cout, kernel, stride, pad, bias=False)
        self.bn1 = layout.BatchNorm1d(cout)
        self.conv2 = layout.Conv1d(cout, cout, kernel, 1, pad, bias=False)
        self.bn2 = layout.BatchNorm1d(cout)
        self.shortcut = (nn.Identity() if cin == cout and stride == 1 else
                         nn.Sequential(layout.Conv1d(cin, cout, 1, stride, bias=False), layout.BatchNorm1d(cout)))
        self.time_layers = [(kernel, stride, pad), (kernel, 1, pad)]


class _ResBlock2d(_ResBlock):
    def __init__(self, cin: int, cout: int, kernel: int, time_stride: int, lead_stride: int, lead_kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv2d(cin, cout, (lead_kernel, kernel), (lead_stride, time_stride),
                               (lead_kernel // 2, pad), bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, (1, kernel), 1, (0, pad), bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        stride = (lead_stride, time_stride)
        self.shortcut = (nn.Identity() if cin == cout and stride == (1, 1) else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.time_layers = [(kernel, time_stride, pad), (kernel, 1, pad)]


def _stem(stem: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The (conv, batch norm, ReLU) stem, its batch norm folded at inference."""
    return torch.relu_(layout.conv_bn(stem[0], stem[1], x))


class Backbone1d(nn.Module):
    """Stem conv + one residual block per stage; (B, leads, T) -> (B, widths[-1], T')."""

    def __init__(self, n_leads: int, widths: Sequence[int], time_strides: Sequence[int], kernel: int = 7,
                 stem_kernel: int = 7, stem_stride: int = 2):
        super().__init__()
        self.stem = nn.Sequential(layout.Conv1d(n_leads, widths[0], stem_kernel, stem_stride, stem_kernel // 2,
                                                bias=False),
                                  layout.BatchNorm1d(widths[0]), nn.ReLU(inplace=True))
        blocks, cin = [], widths[0]
        for width, stride in zip(widths, time_strides):
            blocks.append(_ResBlock1d(cin, width, kernel, stride))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = cin
        self.time_geometry = compose_time_geometry(
            [(stem_kernel, stem_stride, stem_kernel // 2)] + [t for b in blocks for t in b.time_layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layout.as_1d(self.blocks(_stem(self.stem, layout.channels_last_1d(x))))


class Backbone2d(nn.Module):
    """Stem (1 x k) conv + one residual block per stage; (B, leads, T) -> (B, C, leads', T')."""

    def __init__(self, widths: Sequence[int], time_strides: Sequence[int], lead_strides: Sequence[int],
                 kernel: int = 7, stem_kernel: int = 7, stem_stride: int = 2):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], (1, stem_kernel), (1, stem_stride), (0, stem_kernel // 2), bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks, cin = [], widths[0]
        for width, t_stride, l_stride in zip(widths, time_strides, lead_strides):
            blocks.append(_ResBlock2d(cin, width, kernel, t_stride, l_stride))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = cin
        self.time_geometry = compose_time_geometry(
            [(stem_kernel, stem_stride, stem_kernel // 2)] + [t for b in blocks for t in b.time_layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(_stem(self.stem, layout.channels_last_image(x)))


class Trunk(nn.Module):
    """An xresnet1d body shared by the branches: (B, leads, T) -> ``{stage: (B, C_stage, T / stride_stage)}``,
    the maps at the end of the residual stages its branches read (``stages``, numbered from 1; default the last).

    The body stops at the deepest stage read. Its parameters are named as ``XResNet1d.features``'s, so a
    trained xresnet1d's body loads into it as is (``load_features``).
    """

    def __init__(self, config: XResNetConfig, stages: Sequence[int] | None = None):
        super().__init__()
        body, _ = xresnet_body(config)
        ends = xresnet_stage_ends(config)
        self.stages = tuple(sorted(set(stages or (len(ends),))))
        if not 1 <= self.stages[0] <= self.stages[-1] <= len(ends):
            raise ECGError("<ProtoECGNetConfig>", f"trunk stages {self.stages} outside 1..{len(ends)}")
        layers = xresnet_time_layers(config)
        self._taps = {stage: (ends[stage - 1][0], ends[stage - 1][2],
                              compose_time_geometry(layers[:ends[stage - 1][1]])) for stage in self.stages}
        self.features = body[:ends[self.stages[-1] - 1][0]]

    def tap(self, stage: int) -> tuple[int, TimeGeometry]:
        """A stage's output channels and time geometry."""
        return self._taps[stage][1:]

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        at = {modules: stage for stage, (modules, _, _) in self._taps.items()}
        h, out = layout.channels_last_1d(x), {}
        for i, module in enumerate(self.features, start=1):
            h = module(h)
            if i in at:
                out[at[i]] = layout.as_1d(h)
        return out

    def load_features(self, state: dict[str, torch.Tensor]) -> None:
        """Load a trained ``XResNet1d``'s body from its state dict (its ``features.*`` keys up to the deepest stage
        read; the rest and the head's are ignored); a body of another shape raises torch's error."""
        kept = set(self.features._modules)  # a truncated body keeps the full body's module names
        self.features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                       if k.startswith("features.") and k.split(".")[1] in kept})


class TrunkTap(nn.Module):
    """A branch's backbone when the branches share a ``Trunk``: passes the map of its ``stage`` on, with its
    geometry."""

    def __init__(self, stage: int, out_channels: int, time_geometry: TimeGeometry):
        super().__init__()
        self.stage, self.out_channels, self.time_geometry = stage, out_channels, time_geometry

    def forward(self, h: dict[int, torch.Tensor]) -> torch.Tensor:
        return h[self.stage]
