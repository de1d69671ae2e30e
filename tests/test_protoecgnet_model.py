"""ProtoECGNet model: branch table, shapes, best windows and their spans, contributions, collapse."""
from __future__ import annotations

import csv
import io
import json
from importlib import resources

import pytest
import torch

from ecglens.errors import ECGError
from ecglens.models.protoecgnet import (BranchConfig, ClassConnectedLinear, ProtoECGNet, ProtoECGNetConfig,
                                        SimilarityNorm, branch_indices, load_branch_table, window_input_span)
from ecglens.models.protoecgnet.backbones import Backbone1d, Backbone2d
from ecglens.models.protoecgnet.branches import parse_branch_table
from ecglens.models.protoecgnet.model import ChannelStandardize
from ecglens.models.protoecgnet.prototypes import cosine_similarity_map

SUPER = {"NORM": "global", "MI": "morphology", "STTC": "morphology", "CD": "morphology", "HYP": "morphology"}


def tiny_config(**kw) -> ProtoECGNetConfig:
    """A few-thousand-parameter model with the default geometry (time stride 16, 1 s = 6 steps)."""
    branches = {
        "rhythm": BranchConfig(kind="1d", widths=(8, 8), time_strides=(2, 4), kernel=5, prototype_channels=8,
                               prototypes_per_class=2, prototype_mode="pooled"),
        "morphology": BranchConfig(kind="2d", widths=(4, 8), time_strides=(2, 4), lead_strides=(2, 2), kernel=5,
                                   prototype_channels=4, prototypes_per_class=2, prototype_mode="partial"),
        "global": BranchConfig(kind="2d", widths=(4, 4), time_strides=(2, 4), lead_strides=(2, 2), kernel=5,
                               prototype_channels=4, prototypes_per_class=2, prototype_mode="full"),
    }
    return ProtoECGNetConfig(branches=branches, **kw)


@torch.no_grad()
def warmed_up(model: ProtoECGNet) -> ProtoECGNet:
    """Eval-mode model whose BatchNorm statistics come from a few random batches (fresh
    running statistics shrink activations layer by layer until the latent is flat)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the warm-up batches
    model.train()
    for _ in range(2):
        model(torch.randn(8, 12, 1000, dtype=next(model.parameters()).dtype))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module")
def tiny_model() -> ProtoECGNet:
    torch.manual_seed(0)
    return warmed_up(ProtoECGNet(tiny_config()))


@pytest.fixture(scope="module")
def x2() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 12, 1000)


# ---------------------------------------------------------------- branch table
def test_branch_table_has_71_statements_once_16_52_3():
    text = resources.files("ecglens").joinpath("data/protoecgnet_branches.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 71 and len({r["statement"] for r in rows}) == 71
    table = load_branch_table()
    counts = {b: sum(v == b for v in table.values()) for b in ("rhythm", "morphology", "global")}
    assert counts == {"rhythm": 16, "morphology": 52, "global": 3}
    assert table["AFIB"] == "rhythm" and table["LVH"] == "morphology" and table["NORM"] == "global"
    idx = branch_indices(list(table))
    assert [len(v) for v in idx.values()] == [16, 52, 3]
    assert sorted(i for v in idx.values() for i in v) == list(range(71))


def test_branch_table_errors():
    with pytest.raises(ECGError, match="twice"):
        parse_branch_table("statement,branch\nSR,rhythm\nSR,rhythm\n")
    with pytest.raises(ECGError, match="unknown branch"):
        parse_branch_table("statement,branch\nSR,heart\n")
    with pytest.raises(ECGError, match="header"):
        parse_branch_table("label,where\nSR,rhythm\n")
    with pytest.raises(ECGError, match="no branch for statements \\['XYZ'\\]"):
        branch_indices(["SR", "XYZ"])
    with pytest.raises(ECGError, match="more than once"):
        branch_indices(["SR", "SR"])


def test_custom_branch_map_leaves_empty_branch_absent():
    idx = branch_indices(list(SUPER), SUPER)
    assert idx == {"morphology": [1, 2, 3, 4], "global": [0]}
    model = ProtoECGNet(tiny_config(labels=tuple(SUPER), branch_map=SUPER)).eval()
    assert model.branch_names == ["morphology", "global"]
    out = model(torch.randn(2, 12, 1000))
    assert out.logits.shape == (2, 5) and set(out.branch_logits) == {"morphology", "global"}
    # branch_logits_full puts each statement's branch logit back in label order
    assert torch.equal(out.branch_logits_full[:, 0], out.branch_logits["global"][:, 0])
    assert torch.equal(out.branch_logits_full[:, 1:], out.branch_logits["morphology"])


# ---------------------------------------------------------------- config
def test_config_round_trip_and_validation():
    cfg = tiny_config(fusion="dense", labels=tuple(SUPER), branch_map=SUPER)
    back = ProtoECGNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert ProtoECGNetConfig().branches["morphology"].prototype_seconds == 1.0
    with pytest.raises(ECGError, match="fusion"):
        ProtoECGNetConfig(fusion="average")
    with pytest.raises(ECGError, match="lead stride"):
        BranchConfig(kind="2d", widths=(4, 8), time_strides=(2, 2))
    with pytest.raises(ECGError, match="unknown field"):
        ProtoECGNetConfig.from_dict({"labls": ["SR"]})
    bad = cfg.to_dict()
    bad["branches"]["global"]["widths_"] = [4]
    with pytest.raises(ECGError, match="unknown keys"):
        ProtoECGNetConfig.from_dict(bad)


def test_sigmoid_addon_gives_positive_latents_and_prototypes():
    torch.manual_seed(0)
    model = ProtoECGNet(tiny_config(addon_activation="sigmoid", labels=tuple(SUPER), branch_map=SUPER)).eval()
    out = model(torch.randn(2, 12, 1000))
    for name in model.branch_names:
        assert (out.latents[name] > 0).all() and (model.branches[name].prototype_layer.prototypes > 0).all()
        assert (out.similarities[name] > 0).all()


# ---------------------------------------------------------------- shapes and windows
@pytest.mark.slow
def test_shapes_full_model(tiny_model, x2):
    out = tiny_model(x2)
    assert out.logits.shape == (2, 71) and out.branch_logits_full.shape == (2, 71)
    sizes = {"rhythm": 16, "morphology": 52, "global": 3}
    for name, k in sizes.items():
        branch = tiny_model.branches[name]
        assert out.branch_logits[name].shape == (2, k)
        assert out.similarities[name].shape == (2, 2 * k) == out.best_window[name].shape
        assert out.best_window[name].dtype == torch.long
        assert out.latents[name].shape[0] == 2
        assert out.similarity_maps[name].shape[-1] == out.latents[name].shape[-1] - branch.prototype_layer.length + 1
    assert out.latents["rhythm"].shape[-1] == 1  # pooled: one vector per record
    assert tiny_model.branches["global"].prototype_layer.length == out.latents["global"].shape[-1]
    assert tiny_model.branches["morphology"].prototype_layer.length == 6  # 1 s at stride 16 (0.96 s)
    assert len(tiny_model.prototype_table()) == 2 * 71
    with pytest.raises(ECGError, match="expects input"):
        tiny_model(torch.randn(2, 12, 500))


def test_default_model_shapes():
    torch.manual_seed(0)
    model = ProtoECGNet(ProtoECGNetConfig()).eval()
    out = model(torch.randn(2, 12, 1000))
    assert out.logits.shape == (2, 71)
    assert {n: v.shape for n, v in out.branch_logits.items()} == {
        "rhythm": (2, 16), "morphology": (2, 52), "global": (2, 3)}
    assert out.similarities["morphology"].shape == (2, 52 * 3)


def test_best_window_is_brute_force_argmax(x2):
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config()).double())  # float64: no near-tie ambiguity
    with torch.no_grad():
        out = model(x2.double())
    for name in ("morphology", "global", "rhythm"):
        latent = out.latents[name]
        protos = model.branches[name].prototype_layer.prototypes.detach()
        length = protos.shape[-1]
        n_windows = latent.shape[-1] - length + 1
        brute = torch.empty(2, protos.shape[0], n_windows, dtype=torch.float64)
        for b in range(2):
            for p in range(protos.shape[0]):
                for w in range(n_windows):
                    brute[b, p, w] = torch.nn.functional.cosine_similarity(
                        protos[p].flatten(), latent[b, :, w:w + length].flatten(), dim=0)
        assert torch.allclose(out.similarity_maps[name], brute, atol=1e-10)
        assert torch.equal(out.best_window[name], brute.argmax(-1))
        assert torch.allclose(out.similarities[name], brute.amax(-1), atol=1e-10)


def test_window_spans_are_inside_record_and_about_one_second(tiny_model):
    branch = tiny_model.branches["morphology"]
    table = branch.span_table()
    assert table.shape == (branch.latent_width - 6 + 1, 2)
    assert table.min() >= 0 and table.max() <= 1000
    lengths = table[:, 1] - table[:, 0]
    assert ((lengths >= 80) & (lengths <= 100)).all()  # ~1 s at 100 Hz (edges clipped)
    assert (lengths[1:-1] == 6 * 16).all()
    # consecutive windows move by one stride
    assert (table[2:-1, 0].diff() == 16).all()
    # the receptive field contains the footprint
    rf = branch.span_table("receptive_field")
    assert (rf[:, 0] <= table[:, 0]).all() and (rf[:, 1] >= table[:, 1]).all()
    best = torch.tensor([[0, 5], [57, 3]])
    assert torch.equal(branch.input_spans(best), table[best])
    assert torch.equal(tiny_model.branches["rhythm"].span_table(), torch.tensor([[0, 1000]]))


@pytest.mark.parametrize("backbone", [
    Backbone1d(12, (4, 6), (2, 2), kernel=5),
    Backbone2d((3, 4), (2, 2), (2, 1), kernel=5),
])
def test_receptive_field_matches_gradient_support(backbone):
    backbone = backbone.double().eval()
    geo = backbone.time_geometry
    x = torch.randn(1, 12, 400, dtype=torch.float64, requires_grad=True)
    y = backbone(x)
    t = 20
    y[..., t].sum().backward()
    support = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
    lo, hi = window_input_span(t, 1, geo, 400, mode="receptive_field")
    assert lo <= support.min().item() and support.max().item() < hi
    assert support.max().item() - support.min().item() + 1 >= 0.8 * geo.receptive_field


def test_masking_best_window_lowers_its_score():
    torch.manual_seed(3)
    model = warmed_up(ProtoECGNet(tiny_config()).double())
    branch = model.branches["morphology"]
    x = torch.randn(1, 12, 1000, dtype=torch.float64)
    w0, length = 30, branch.prototype_layer.length
    with torch.no_grad():
        branch.prototype_layer.prototypes[0] = branch.latent(x)[0, :, w0:w0 + length]
        out = model(x)
    assert out.best_window["morphology"][0, 0].item() == w0
    assert out.similarities["morphology"][0, 0].item() == pytest.approx(1.0, abs=1e-12)
    start, end = branch.input_spans(out.best_window["morphology"])[0, 0].tolist()
    masked = x.clone()
    masked[..., start:end] = 0
    far = x.clone()
    rf_lo, rf_hi = branch.span_table("receptive_field")[w0].tolist()
    far[..., rf_hi:] = 0  # outside everything the matched window sees
    with torch.no_grad():
        after = model(masked).similarities["morphology"][0, 0].item()
        untouched = model(far).similarities["morphology"][0, 0].item()
    assert after < 0.99
    assert untouched == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- contributions
@pytest.mark.parametrize("fusion", ["masked", "dense"])
def test_logit_is_sum_of_contributions_plus_bias(fusion, x2):
    torch.manual_seed(0)
    model = ProtoECGNet(tiny_config(fusion=fusion)).double()
    with torch.no_grad():  # move away from the symmetric initialisation
        model.fusion.weight.add_(0.1 * torch.randn_like(model.fusion.weight))
        model.fusion.bias.normal_()
        for b in model.branches.values():
            b.last_layer.bias.normal_()
    x = x2[:1].double()
    model.eval()
    with torch.no_grad():
        out = model(x)
    fused = model.contributions(x)
    assert fused.values.shape == (71, 2 * 71) and len(fused.prototypes) == 2 * 71
    assert torch.allclose(fused.values.sum(-1) + fused.bias, fused.logits, atol=1e-10)
    assert torch.allclose(fused.logits, out.logits[0], atol=1e-10)
    index, table = model.config.branch_index, model.prototype_table()
    own_branch = torch.tensor([[c in index[r["branch"]] for r in table] for c in range(71)])
    if fusion == "masked":
        assert (fused.values[~own_branch] == 0).all()
    else:
        assert (fused.values[~own_branch] != 0).any()
    for name in model.branch_names:
        c = model.contributions(x[0], head=name)
        assert torch.allclose(c.values.sum(-1) + c.bias, c.logits, atol=1e-10)
        assert torch.allclose(c.logits, out.branch_logits[name][0], atol=1e-10)
        assert c.labels == [model.labels[i] for i in model.config.branch_index[name]]
    with pytest.raises(ECGError, match="unknown head"):
        model.contributions(x, head="pacemaker")


# ---------------------------------------------------------------- collapse
def test_initial_logits_stay_bounded_when_every_similarity_is_large():
    """After projection every similarity was ~1; ~900 off-class prototypes at -0.5 each
    pushed every logit to a saturated negative value. Scaled init + normalisation prevent it."""
    torch.manual_seed(0)
    n_classes, per_class = 52, 18
    proto_class = torch.arange(n_classes).repeat_interleave(per_class)  # 936 prototypes
    layer = ClassConnectedLinear(proto_class, n_classes, off_class=-0.5)
    norm = SimilarityNorm(proto_class.numel())
    sims = 0.99 + 0.01 * torch.rand(16, proto_class.numel())
    # eval with identity statistics: raw similarities, logits near 0.5 and still distinct;
    # training: batch-standardised similarities, logits spread but O(1)
    for training, min_spread in ((False, 1e-5), (True, 0.05)):
        norm.train(training)
        logits = layer(norm(sims))
        assert logits.abs().max() < 10
        assert logits.std() > min_spread  # not one saturated value for everything
    naive = (layer.class_identity.T - 0.5 * (1 - layer.class_identity.T)) @ sims.T  # +1 / -0.5, unscaled
    assert naive.max() < -400  # what the unscaled initialisation would have produced
    # eval, identity statistics: logit = mean(own sims) - 0.5 * mean(off sims) ~ 0.5
    fresh = SimilarityNorm(proto_class.numel()).eval()
    assert torch.allclose(layer(fresh(torch.ones(2, proto_class.numel()))), torch.full((2, n_classes), 0.5))
    # calibrated statistics standardise near-constant similarities
    spread = 0.9 + 0.1 * torch.rand(64, proto_class.numel())
    norm.fit(spread)
    z = norm(spread)
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(z.shape[1]), atol=1e-2)
    assert layer(z).abs().max() < 10


def test_calibrate_standardises_similarities():
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config(labels=tuple(SUPER), branch_map=SUPER))).train()
    batches = [torch.randn(8, 12, 1000) for _ in range(3)]
    assert model.calibrate(batches) == 24
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(b).normalized["morphology"] for b in batches])
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1]), atol=1e-3)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(z.shape[1]), atol=1e-2)


def test_inference_layout_gives_the_plain_layouts_similarities(tiny_model, x2):
    # inference runs the backbones channels-last (ecglens.models.layout); with autograd on they run NCW/NCHW
    with torch.inference_mode():
        fast = tiny_model(x2)
    plain = tiny_model(x2)
    for name in tiny_model.branch_names:
        torch.testing.assert_close(fast.similarity_maps[name], plain.similarity_maps[name].detach(),
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.logits, plain.logits.detach(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("length", [1, 6, 63])
def test_cosine_similarity_map_and_its_gradients_match_a_straightforward_reference(length):
    torch.manual_seed(0)
    latent = torch.randn(3, 48, 63, dtype=torch.float64, requires_grad=True)
    protos = torch.randn(5, 48, length, dtype=torch.float64, requires_grad=True)
    windows = latent.unfold(2, length, 1).permute(0, 2, 1, 3).flatten(2)  # (B, W', D*L)
    want = torch.nn.functional.cosine_similarity(windows[:, None], protos.flatten(1)[None, :, None], dim=-1)
    got = cosine_similarity_map(latent.float(), protos.float())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    weights = torch.randn(want.shape, dtype=torch.float64)
    grads_want = torch.autograd.grad((want * weights).sum(), (latent, protos))
    grads_got = torch.autograd.grad((got.double() * weights).sum(), (latent, protos))
    for g, w in zip(grads_got, grads_want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_channel_standardize_matches_mean_and_variance_and_their_gradients():
    torch.manual_seed(0)
    for shape in ((4, 16, 63), (4, 16, 3, 63)):
        x = torch.randn(shape, requires_grad=True)
        want = (x - x.mean(1, keepdim=True)) / (x.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
        got = ChannelStandardize(16)(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        weights = torch.randn(shape)
        torch.testing.assert_close(torch.autograd.grad((got * weights).sum(), x)[0],
                                   torch.autograd.grad((want * weights).sum(), x)[0], rtol=1e-5, atol=1e-5)
