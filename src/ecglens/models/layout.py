"""Channels-last execution of the 1D and 2D CNNs (oneDNN's fast CPU layout for few-channel convolutions).

The networks' convolutions have few channels (8-256), where oneDNN runs channels-last
(N, H, W, C in memory) maps two to three times faster than NCHW ones. PyTorch has no
channels-last layout for 1D maps, so a (N, C, W) map runs as a (N, C, 1, W) channels-last
one: the ``Conv1d``, ``BatchNorm1d`` and pools below also take such 4D input and keep it
channels-last; on 3D input they are torch's own. They have torch's parameters and
state-dict keys, so checkpoints load unchanged.

Only inference converts (autograd off: ``torch.inference_mode``/``no_grad``): in torch
2.13 the weight gradient of a strided 1x1 convolution on channels-last input corrupts
the heap, so training and gradient explanations keep the plain NCW/NCHW layout. ONNX
export keeps it too (onnxruntime picks its own layouts).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _single


def _plain() -> bool:
    return torch.is_grad_enabled() or torch.onnx.is_in_onnx_export()


def channels_last_1d(x: torch.Tensor) -> torch.Tensor:
    """(N, C, W) -> (N, C, 1, W) channels-last (a copy) for inference; else ``x`` unchanged."""
    if _plain():
        return x
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def channels_last_image(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> the one-channel image (N, 1, H, W), for inference strided as channels-last (no copy)."""
    if _plain():
        return x.unsqueeze(1)
    # unsqueeze(1) would give the channel a stride of H*W, which torch reads as NCHW; this view reads as NHWC
    return x.unsqueeze(-1).permute(0, 3, 1, 2)


def as_1d(x: torch.Tensor) -> torch.Tensor:
    """A (N, C, 1, W) map back to (N, C, W) (a view); 3D maps pass through."""
    return x.squeeze(2) if x.dim() == 4 else x


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` that also runs (N, C, 1, W) input, as the equivalent 2D convolution."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if x.dim() != 4:
            return super()._conv_forward(x, weight, bias)
        return F.conv2d(x, weight.unsqueeze(2), bias, (1, self.stride[0]), (0, self.padding[0]),
                        (1, self.dilation[0]), self.groups)


def conv_bn(conv: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))`` for a zero-padded ``Conv1d``/``Conv2d`` and an affine batch norm; at inference with
    running statistics, one convolution with the batch norm folded into its weights and bias."""
    if _plain() or bn.training:
        return bn(conv(x))
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    shift = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return conv._conv_forward(x, conv.weight * scale.reshape(-1, *[1] * (conv.weight.dim() - 1)), shift)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also takes (N, C, 1, W) input (statistics per channel, as for (N, C, W))."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or (N, C, 1, W) input (got {input.dim()}D input)")


class MaxPool1d(nn.MaxPool1d):
    """``nn.MaxPool1d`` that also takes (N, C, 1, W) input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x)
        k, s, p, d = (_single(v)[0] for v in (self.kernel_size, self.stride, self.padding, self.dilation))
        return F.max_pool2d(x, (1, k), (1, s), (0, p), (1, d), ceil_mode=self.ceil_mode)


class AvgPool1d(nn.AvgPool1d):
    """``nn.AvgPool1d`` that also takes (N, C, 1, W) input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x)
        k, s, p = (_single(v)[0] for v in (self.kernel_size, self.stride, self.padding))
        return F.avg_pool2d(x, (1, k), (1, s), (0, p), self.ceil_mode, self.count_include_pad)
