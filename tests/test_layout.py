"""Channels-last inference (ecglens.models.layout) computes what the plain NCW/NCHW networks compute."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ecglens.models import layout
from ecglens.models.xresnet1d import XResNet1d, XResNetConfig
from ecglens.models.protoecgnet.backbones import Backbone1d, Backbone2d


def _plain(module: nn.Module) -> nn.Module:
    """A copy whose layout modules are torch's own (same weights, same state-dict keys)."""
    module = copy.deepcopy(module)
    swap = {layout.Conv1d: nn.Conv1d, layout.BatchNorm1d: nn.BatchNorm1d, layout.MaxPool1d: nn.MaxPool1d,
            layout.AvgPool1d: nn.AvgPool1d}
    for m in module.modules():
        if type(m) in swap:
            m.__class__ = swap[type(m)]
    return module


def _plain_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's output computed the pre-layout way (NCW maps, NCHW images)."""
    if isinstance(model, XResNet1d):
        return model.head(model.features(x))
    if isinstance(model, Backbone2d):
        return model.blocks(model.stem(x.unsqueeze(1)))
    return model.blocks(model.stem(x))


@torch.no_grad()
def _warmed_up(model: nn.Module) -> nn.Module:
    """Eval mode with batch-norm statistics and scales away from their initial values."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)  # xresnet starts some scales at zero
    return model.eval()


def _models():
    torch.manual_seed(0)
    return [XResNet1d(5, XResNetConfig.named("xresnet1d18", widths=(8, 16, 16, 32), stem=(8, 8, 16))),
            Backbone1d(12, (8, 16), (2, 2), kernel=5),
            Backbone2d((4, 8, 16), (1, 2, 2), (2, 2, 1), kernel=5)]


@pytest.mark.parametrize("model", _models(), ids=["xresnet1d", "backbone1d", "backbone2d"])
def test_inference_runs_channels_last_and_matches_the_plain_layout(model):
    model = _warmed_up(model)
    plain = _plain(model)
    assert list(model.state_dict()) == list(plain.state_dict())
    x = torch.randn(6, 12, 400)
    with torch.inference_mode():
        got = model(x)
    want = _plain_forward(plain, x).detach()  # autograd on: plain layout, batch norms not folded
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", _models(), ids=["xresnet1d", "backbone1d", "backbone2d"])
def test_training_keeps_the_plain_layout(model):
    # channels-last weight gradients of strided 1x1 convolutions corrupt memory in torch 2.13
    plain = _plain(model)
    model.train(), plain.train()
    torch.manual_seed(2)
    x = torch.randn(6, 12, 400)
    torch.manual_seed(3)
    got = model(x)
    torch.manual_seed(3)
    want = _plain_forward(plain, x)
    assert torch.equal(got, want)
    got.square().sum().backward()
    want.square().sum().backward()
    for (name, pa), (_, pb) in zip(model.named_parameters(), plain.named_parameters()):
        assert torch.equal(pa.grad, pb.grad), name


def test_layout_modules_take_both_shapes():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 50)
    with torch.inference_mode():
        x4 = layout.channels_last_1d(x)
        assert x4.shape == (3, 6, 1, 50) and x4.is_contiguous(memory_format=torch.channels_last)
        for module in (layout.Conv1d(6, 4, 5, stride=2, padding=2, bias=True), layout.BatchNorm1d(6).eval(),
                       layout.MaxPool1d(3, stride=2, padding=1), layout.AvgPool1d(2, ceil_mode=True)):
            y3, y4 = module(x), module(x4)
            assert y4.dim() == 4 and y4.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(layout.as_1d(y4), y3, atol=1e-6, rtol=1e-6)
        image = layout.channels_last_image(torch.randn(2, 12, 40))
        assert image.shape == (2, 1, 12, 40)
        assert nn.Conv2d(1, 4, 3)(image).is_contiguous(memory_format=torch.channels_last)
    assert layout.channels_last_1d(x) is x  # autograd on: plain layout
    with pytest.raises(ValueError, match="input"):
        layout.BatchNorm1d(6)(torch.randn(2, 6, 1, 1, 5))


@pytest.mark.parametrize("kind", ["conv1d", "conv1d-on-1xW", "conv2d"])
def test_conv_bn_folds_the_batch_norm_at_inference_only(kind):
    torch.manual_seed(0)
    if kind == "conv2d":
        conv, bn, x = nn.Conv2d(4, 6, (3, 5), (2, 1), (1, 2), bias=True), nn.BatchNorm2d(6), torch.randn(3, 4, 12, 40)
    else:
        conv, bn, x = layout.Conv1d(4, 6, 5, 2, 2, bias=True), layout.BatchNorm1d(6), torch.randn(3, 4, 40)
    _warmed_up(bn)
    with torch.inference_mode():
        got = layout.conv_bn(conv, bn, layout.channels_last_1d(x) if kind == "conv1d-on-1xW" else x)
        want = bn(conv(x))
    torch.testing.assert_close(layout.as_1d(got), want, atol=1e-5, rtol=1e-5)
    bn.train()
    before = bn.running_mean.clone()
    with torch.no_grad():
        torch.testing.assert_close(layout.conv_bn(conv, bn, x), nn.functional.batch_norm(conv(x), None, None, bn.weight,
                                                                                         bn.bias, True, 0.0, bn.eps))
    assert not torch.equal(bn.running_mean, before)  # a training-mode batch norm keeps its batch statistics
