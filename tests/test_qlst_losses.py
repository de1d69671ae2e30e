"""qLST loss terms on hand-computed examples, and the config."""
import math

import pytest
import torch

from ecglens.errors import ECGError
from ecglens.models.qlst import (
    QLSTConfig,
    beat_mse,
    beat_rmse,
    bernoulli_kl,
    linear_proximity_weight,
    prior_loss,
    prior_nll,
    prior_radius_penalty,
    proximity_loss,
    proximity_reference,
    proximity_weight,
    qlst_loss,
    target_loss,
)


def test_bernoulli_kl_by_hand():
    # KL(0.5 || 0.8) = 0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2)
    expected = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    got = bernoulli_kl(torch.tensor([0.5]), torch.tensor([0.8]))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.22314, abs=1e-5)
    # zero exactly at p == q, also at the ends (0 log 0 = 0)
    q = torch.tensor([0.0, 0.3, 1.0])
    assert torch.allclose(bernoulli_kl(q, q.clamp(1e-6, 1 - 1e-6)), torch.zeros(3), atol=1e-5)
    # q = 1: KL = -ln p
    assert bernoulli_kl(torch.tensor([1.0]), torch.tensor([0.25])).item() == pytest.approx(math.log(4), rel=1e-5)


def test_target_loss_kinds():
    p, q = torch.tensor([0.9, 0.2]), torch.tensor([0.6, 0.2])
    assert torch.allclose(target_loss(p, q, "mse"), torch.tensor([0.09, 0.0]))
    assert target_loss(p, q, "kl")[1].item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        target_loss(p, q, "hinge")


def test_kl_gradient_in_logit_is_p_minus_q():
    logit = torch.tensor([0.7], requires_grad=True)
    bernoulli_kl(torch.tensor([0.2]), torch.sigmoid(logit)).sum().backward()
    assert logit.grad.item() == pytest.approx(torch.sigmoid(torch.tensor(0.7)).item() - 0.2, rel=1e-4)


def test_proximity_weight_formula():
    q, p0 = torch.tensor([0.5, 0.9, 0.3]), torch.tensor([0.5, 0.4, 0.4])
    w = proximity_weight(q, p0, tau=0.2)
    assert torch.allclose(w, torch.tensor([1.0, math.exp(-2.5), math.exp(-0.5)]), atol=1e-6)
    assert not w.requires_grad


def test_beat_rmse_by_hand():
    x0 = torch.zeros(2, 12, 10)
    x1 = torch.zeros(2, 12, 10)
    x1[0] += 0.3  # constant 0.3 mV shift -> RMSE 0.3
    x1[1, 0, :5] = 1.2  # 5 of 120 samples at 1.2 mV -> sqrt(5 * 1.44 / 120)
    got = beat_rmse(x0, x1)
    assert got[0].item() == pytest.approx(0.3, rel=1e-5)
    assert got[1].item() == pytest.approx(math.sqrt(5 * 1.44 / 120), rel=1e-5)


def test_prior_terms_by_hand():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert prior_nll(z)[0].item() == pytest.approx(12.5 + math.log(2 * math.pi), rel=1e-6)
    assert prior_nll(z)[1].item() == pytest.approx(math.log(2 * math.pi), rel=1e-6)
    # ||z|| = 5; radius 2 -> (5 - 2)^2 = 9; inside the radius -> 0
    assert torch.allclose(prior_radius_penalty(z, 2.0), torch.tensor([9.0, 0.0]))
    assert torch.allclose(prior_loss(z, "nll", 2.0), prior_nll(z) / 2)
    assert prior_radius_penalty(torch.tensor([[1.0, 1.0]]), 2.0).item() == 0.0


def test_qlst_loss_combines_terms_with_weights():
    cfg = QLSTConfig(statements=("A",), latent_dim=2, w_target=2.0, w_proximity=3.0, proximity_tau=0.5,
                     w_prior=0.5, prior_radius=1.0)
    p1, q, p0 = torch.tensor([0.8]), torch.tensor([0.5]), torch.tensor([0.3])
    x0, x1 = torch.zeros(1, 12, 4), torch.full((1, 12, 4), 0.1)
    z1 = torch.tensor([[0.0, 3.0]])
    total, logs = qlst_loss(p1, q, p0, x0, x1, z1, cfg)
    kl = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    expected = 2.0 * kl + 3.0 * math.exp(-0.2 / 0.5) * 0.1 + 0.5 * (3.0 - 1.0) ** 2
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert logs["success"].item() == 0.0  # |0.8 - 0.5| > 0.1


def test_config_round_trip_and_validation():
    cfg = QLSTConfig(statements=("AFIB", "STD_"), latent_dim=8, hidden=(32,))
    assert QLSTConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.radius == pytest.approx(math.sqrt(8))
    with pytest.raises(ECGError):
        QLSTConfig(statements=(), latent_dim=8)
    with pytest.raises(ECGError):
        QLSTConfig(statements=("A", "A"), latent_dim=8)
    with pytest.raises(ECGError):
        QLSTConfig(statements=("A",), latent_dim=8, target_loss="l1")
    with pytest.raises(ECGError):
        QLSTConfig.from_dict({**cfg.to_dict(), "nonsense": 1})


def test_paper_proximity_terms_by_hand():
    q, p0 = torch.tensor([0.5, 0.9, 0.3]), torch.tensor([0.5, 0.4, 0.4])
    w = linear_proximity_weight(q, p0)
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.9]), atol=1e-6) and not w.requires_grad
    x0, x1 = torch.zeros(1, 12, 10), torch.zeros(1, 12, 10)
    x1[0, 0, :5] = 1.2  # 5 of 120 samples at 1.2 mV -> MSE 5 * 1.44 / 120 = 0.06 mV^2
    assert beat_mse(x0, x1).item() == pytest.approx(0.06, rel=1e-5)
    q1, p1 = torch.tensor([0.9]), torch.tensor([0.4])
    assert proximity_loss(q1, p1, x0, x1, "paper", 0.2).item() == pytest.approx(0.5 * 0.06, rel=1e-5)
    assert proximity_loss(q1, p1, x0, x1, "relaxed", 0.2).item() == pytest.approx(
        math.exp(-2.5) * math.sqrt(0.06), rel=1e-5)
    with pytest.raises(ValueError):
        proximity_loss(q1, p1, x0, x1, "huber", 0.2)


def test_qlst_loss_paper_variant_by_hand():
    cfg = QLSTConfig(statements=("A",), latent_dim=2, w_proximity=30.0, w_prior=0.5, prior_radius=1.0,
                     proximity="paper", proximity_reference="input")
    p1, q, p_x = torch.tensor([0.8]), torch.tensor([0.5]), torch.tensor([0.3])
    x, x1 = torch.zeros(1, 12, 4), torch.full((1, 12, 4), 0.1)
    z1 = torch.tensor([[0.0, 3.0]])
    total, _ = qlst_loss(p1, q, p_x, x, x1, z1, cfg)
    kl = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    expected = kl + 30.0 * (1 - 0.2) * 0.01 + 0.5 * (3.0 - 1.0) ** 2
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_proximity_reference_picks_decoded_or_input():
    x0, p0, x, p_x = torch.zeros(1, 2, 3), torch.tensor([0.1]), torch.ones(1, 2, 3), torch.tensor([0.7])
    ours = QLSTConfig(statements=("A",), latent_dim=2)
    paper = QLSTConfig(statements=("A",), latent_dim=2, proximity_reference="input")
    assert proximity_reference(ours, x0, p0, x, p_x) == (x0, p0)
    assert proximity_reference(ours, x0, p0, None, None) == (x0, p0)
    assert proximity_reference(paper, x0, p0, x, p_x) == (x, p_x)
    with pytest.raises(ValueError, match="real beats"):
        proximity_reference(paper, x0, p0, None, None)


def test_variants_and_new_fields_validate_and_round_trip():
    from ecglens.models.qlst.config import PAPER, VARIANTS

    cfg = QLSTConfig(statements=("A",), latent_dim=4, **VARIANTS["paper"])
    assert (cfg.proximity, cfg.proximity_reference, cfg.moves, cfg.calibration_steps) == ("paper", "input", 1, 0)
    assert QLSTConfig.from_dict(cfg.to_dict()) == cfg and VARIANTS["paper"] is PAPER and VARIANTS["ours"] == {}
    # a config saved before these fields existed loads as our variant
    old = {k: v for k, v in QLSTConfig(statements=("A",), latent_dim=4).to_dict().items()
           if k not in ("proximity", "proximity_reference")}
    assert (QLSTConfig.from_dict(old).proximity, QLSTConfig.from_dict(old).proximity_reference) == ("relaxed", "decoded")
    with pytest.raises(ECGError):
        QLSTConfig(statements=("A",), latent_dim=4, proximity="l1")
    with pytest.raises(ECGError):
        QLSTConfig(statements=("A",), latent_dim=4, proximity_reference="real")
