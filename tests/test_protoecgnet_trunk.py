"""ProtoECGNet on a shared xresnet1d trunk: geometry, loading a trained body, config checks, explanations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ecglens.errors import ECGError
from ecglens.models.protoecgnet import BranchConfig, ProtoECGNet, ProtoECGNetConfig, window_input_span
from ecglens.models.protoecgnet.backbones import TimeGeometry, Trunk
from ecglens.models.protoecgnet.classifier import model_from_checkpoint
from ecglens.models.protoecgnet.projection import collect_latents, sync_prototypes
from ecglens.models.xresnet1d import XResNet1d, XResNetConfig
from ecglens.training import load_checkpoint, save_checkpoint

BASIC = XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 16), stem=(4, 4, 8), head_hidden=None)
BOTTLENECK = XResNetConfig(layers=(1, 2), expansion=4, widths=(4, 4), stem=(4, 4, 8), head_hidden=None)


def trunk_config(trunk: XResNetConfig = BASIC, **kw) -> ProtoECGNetConfig:
    """Three branches on one tiny trunk (time stride 8: 1 s = 12 latent steps)."""
    branches = {"rhythm": BranchConfig(kind="trunk", prototype_channels=8, prototypes_per_class=2,
                                       prototype_mode="pooled"),
                "morphology": BranchConfig(kind="trunk", prototype_channels=4, prototypes_per_class=2),
                "global": BranchConfig(kind="trunk", prototype_channels=4, prototypes_per_class=2,
                                       prototype_mode="full")}
    return ProtoECGNetConfig(branches=branches, trunk=trunk, **kw)


def trunk_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> ProtoECGNet:
    torch.manual_seed(seed)
    model = ProtoECGNet(trunk_config()).to(dtype)
    with torch.no_grad():  # batch statistics from data, so the eval-mode latents are not flat
        model.train()
        model(torch.randn(16, 12, 1000, dtype=dtype))
    return model.eval()


def assert_stage_receptive_field(config: XResNetConfig, stage: int, step: int) -> TimeGeometry:
    """The input samples a step of ``stage``'s map depends on (its gradient support) lie within the receptive
    field the time geometry gives, and fill most of it; returns that geometry."""
    trunk = Trunk(config, stages=(stage,)).double().eval()
    with torch.no_grad():  # residual branches start silenced (zero batch-norm scale); trained ones are not
        for m in trunk.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.fill_(1.0)
    channels, geo = trunk.tap(stage)
    x = torch.randn(1, 12, 600, dtype=torch.float64, requires_grad=True)
    out = trunk(x)
    assert set(out) == {stage} and out[stage].shape[1] == channels
    out[stage][..., step].sum().backward()
    support = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
    lo, hi = window_input_span(step, 1, geo, 600, mode="receptive_field")
    assert lo <= support.min().item() and support.max().item() < hi
    assert support.max().item() - support.min().item() + 1 >= 0.8 * geo.receptive_field
    return geo


@pytest.mark.parametrize("config", [BASIC, BOTTLENECK], ids=["basic", "bottleneck"])
def test_trunk_receptive_field_matches_gradient_support(config):
    geo = assert_stage_receptive_field(config, len(config.layers), 30)
    assert geo.stride == 2 * 2 * 2 ** (len(config.layers) - 1)  # strided stem conv, max pool, stages after the first


def test_trunk_loads_a_trained_xresnet_body():
    torch.manual_seed(0)
    net = XResNet1d(5, BASIC)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not the initial weights: a load that does nothing would fail
    net.eval()
    trunk = Trunk(BASIC).eval()
    trunk.load_features(net.state_dict())
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        assert torch.allclose(trunk(x)[len(BASIC.layers)], net.features(x), atol=1e-6)
    with pytest.raises(RuntimeError):
        Trunk(BOTTLENECK).load_features(net.state_dict())


def test_trunk_config_is_checked():
    with pytest.raises(ECGError, match="read the trunk but the config has none"):
        ProtoECGNetConfig(branches=trunk_config().branches)
    small = {n: BranchConfig(kind="1d", widths=(4,), time_strides=(4,)) for n in ("rhythm", "morphology", "global")}
    with pytest.raises(ECGError, match="no branch reads it"):
        ProtoECGNetConfig(branches=small, trunk=BASIC)
    with pytest.raises(ECGError, match="takes 3 leads"):
        trunk_config(XResNetConfig(layers=(1,), widths=(4,), in_channels=3))
    assert ProtoECGNetConfig.from_dict(trunk_config().to_dict()) == trunk_config()


def test_trunk_model_contributions_and_checkpoint_round_trip(tmp_path):
    model = trunk_model()
    assert model.branches["morphology"].prototype_layer.length == 12  # 1 s at stride 8
    assert not any(k.startswith("branches.") and ".backbone." in k for k in model.state_dict())  # one trunk, no copies
    x = torch.randn(12, 1000, dtype=torch.float64)
    c = model.contributions(x)
    assert torch.allclose(c.values.sum(-1) + c.bias, c.logits, atol=1e-9)
    save_checkpoint(tmp_path, model, {"kind": "protoecgnet", "model": model.config.to_dict()})
    loaded = model_from_checkpoint(*load_checkpoint(tmp_path)).double()
    with torch.no_grad():
        assert torch.allclose(loaded(x[None]).logits, model(x[None]).logits, atol=1e-9)


def test_trunk_prototype_synced_to_its_source_matches_it_exactly():
    model = trunk_model(1, torch.float32)  # as projection runs it
    signals = np.random.default_rng(0).standard_normal((3, 12, 1000)).astype(np.float32)
    latents = collect_latents(model, signals)
    assert latents["morphology"].shape[-1] == 125 and latents["rhythm"].shape[-1] == 1
    sync_prototypes(model, signals, [("morphology", 1, 2, 40), ("rhythm", 0, 0, 0)])
    with torch.no_grad():
        out = model(torch.as_tensor(signals))
    assert out.similarities["morphology"][2, 1].item() == pytest.approx(1.0, abs=1e-5)
    assert out.best_window["morphology"][2, 1].item() == 40
    assert out.similarities["rhythm"][0, 0].item() == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------ a branch reading an earlier stage
THREE = XResNetConfig(layers=(1, 1, 1), expansion=1, widths=(8, 16, 16), stem=(4, 4, 8), head_hidden=None)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_map_has_its_receptive_field(stage):
    assert assert_stage_receptive_field(THREE, stage, 20).stride == 4 * 2 ** (stage - 1)
    assert Trunk(THREE, stages=(stage,)).tap(stage)[0] == THREE.widths[stage - 1]


def test_a_trunk_read_at_stage_two_stops_there_and_loads_the_trained_body_up_to_it():
    torch.manual_seed(0)
    net = XResNet1d(5, THREE)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net.eval()
    full, early = Trunk(THREE).eval(), Trunk(THREE, stages=(2,)).eval()
    full.load_features(net.state_dict())
    early.load_features(net.state_dict())
    assert sum(p.numel() for p in early.parameters()) < sum(p.numel() for p in full.parameters())
    both = Trunk(THREE, stages=(3, 2)).eval()
    both.load_features(net.state_dict())
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        maps = both(x)
        assert torch.allclose(early(x)[2], net.features[:6](x), atol=1e-6)  # stem (3), pool, two blocks
        assert torch.allclose(maps[2], early(x)[2], atol=1e-6) and torch.allclose(maps[3], full(x)[3], atol=1e-6)
    with pytest.raises(ECGError, match="outside"):
        Trunk(THREE, stages=(4,))


def test_model_with_morphology_on_an_earlier_stage():
    branches = dict(trunk_config(THREE).branches)
    branches["morphology"] = BranchConfig(kind="trunk", prototype_channels=4, prototypes_per_class=2, trunk_stage=2)
    config = ProtoECGNetConfig(branches=branches, trunk=THREE)
    assert config.trunk_stages() == (2, 3) and ProtoECGNetConfig.from_dict(config.to_dict()) == config
    torch.manual_seed(0)
    model = ProtoECGNet(config).double().eval()
    assert model.branches["morphology"].time_geometry.stride == 8  # stage 2, where the others read stride 16
    assert model.branches["global"].time_geometry.stride == 16
    assert model.branches["morphology"].prototype_layer.length == 12  # 1 s at stride 8
    x = torch.randn(12, 1000, dtype=torch.float64)
    c = model.contributions(x)
    assert torch.allclose(c.values.sum(-1) + c.bias, c.logits, atol=1e-9)
    with pytest.raises(ECGError, match="outside the trunk's stages"):
        branches["morphology"] = BranchConfig(kind="trunk", trunk_stage=4)
        ProtoECGNetConfig(branches=branches, trunk=THREE)
