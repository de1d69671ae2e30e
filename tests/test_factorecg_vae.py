"""FactorECG VAE: shapes, lead handling, losses (hand-checked), overfitting, black box."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ecglens.errors import ECGError
from ecglens.models.factorecg import (BeatClassifier, BeatClassifierConfig, BeatEncoder, FactorVAE, FactorVAEConfig,
                                      VAEOutput, decode_latents, ecg_lead_scale, encode_beats, gaussian_nll,
                                      kl_divergence, kl_warmup, vae_loss)




def tiny(beat_samples=120, lead_mode="8+derived", **kw) -> FactorVAEConfig:
    base = dict(beat_samples=beat_samples, lead_mode=lead_mode, latent_dim=4, channels=(4, 8),
                kernel_sizes=(5, 3), hidden_dim=16)
    base.update(kw)
    return FactorVAEConfig(**base)


def synthetic_beats(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """Gaussian-bump P/QRS/T beats with per-record amplitudes, limb leads consistent."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1.2, samples)
    out = np.zeros((n, 12, samples), np.float32)
    for i in range(n):
        amp = rng.uniform(0.5, 1.5, size=(8, 3)) * np.array([0.15, 1.0, 0.3])
        width = rng.uniform(0.8, 1.2)
        waves = np.stack([a[0] * np.exp(-((t - 0.3) / 0.03) ** 2) + a[1] * np.exp(-((t - 0.5) / (0.025 * width)) ** 2)
                          + a[2] * np.exp(-((t - 0.8) / 0.05) ** 2) for a in amp])
        lead_i, lead_ii = waves[0], waves[1]
        out[i] = np.concatenate([np.stack([lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
                                           lead_i - lead_ii / 2, lead_ii - lead_i / 2]), waves[2:]])
    return out


@pytest.mark.parametrize("samples", [120, 600, 97])
@pytest.mark.parametrize("mode", ["12", "8+derived"])
def test_shapes_any_length(samples, mode):
    torch.manual_seed(0)
    vae = FactorVAE(tiny(samples, mode))
    x = torch.randn(3, 12, samples)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (3, 4)
    assert vae.decode(mu).shape == (3, 12, samples)
    out = vae(x)
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == (3, 12, samples)
    assert out.recon_net.shape == (3, vae.config.n_leads, samples)
    vae.eval()
    out = vae(x)
    assert torch.equal(out.z, out.mu)  # eval: deterministic decode of the mean
    with pytest.raises(ECGError):
        vae(torch.randn(3, 12, samples + 1))


def test_derived_limb_leads_exact():
    torch.manual_seed(1)
    vae = FactorVAE(tiny(lead_mode="8+derived", lead_scale=(0.5, 2.0) + (1.0,) * 4 + (0.3,) * 6))
    r = vae.decode(torch.randn(5, 4))
    lead_i, lead_ii = r[:, 0], r[:, 1]
    assert torch.equal(r[:, 2], lead_ii - lead_i)
    assert torch.equal(r[:, 3], -(lead_i + lead_ii) / 2)
    assert torch.equal(r[:, 4], lead_i - lead_ii / 2)
    assert torch.equal(r[:, 5], lead_ii - lead_i / 2)


@pytest.mark.parametrize("mode", ["12", "8+derived"])
def test_lead_scale_round_trip(mode):
    scale = tuple(float(s) for s in np.linspace(0.2, 2.4, 12))
    vae = FactorVAE(tiny(lead_mode=mode, lead_scale=scale))
    x = torch.from_numpy(synthetic_beats(2, 120))
    net = vae.adapter.to_network(x)
    leads = vae.config.leads
    assert net.shape[1] == len(leads)
    # network units are mV divided by each lead's own scale
    from ecglens.io.leads import STANDARD_LEADS
    k = STANDARD_LEADS.index(leads[-1])
    torch.testing.assert_close(net[:, -1], x[:, k] / scale[k])
    torch.testing.assert_close(vae.adapter.to_mv(net), x, atol=1e-6, rtol=1e-5)


def test_ecg_lead_scale_hand():
    beats = np.zeros((2, 12, 4))
    beats[:, 0] = [[1, -1, 1, -1], [1, -1, 1, -1]]  # std 1
    beats[:, 1] = [[0, 0, 0, 4], [0, 0, 0, 4]]  # mean 1, std sqrt(3)
    s = ecg_lead_scale(beats, floor=0.05)
    assert s[0] == pytest.approx(1.0)
    assert s[1] == pytest.approx(math.sqrt(3))
    assert s[2] == 0.05  # flat lead floored
    with pytest.raises(ECGError):
        ecg_lead_scale(np.zeros((2, 8, 4)))


def test_config_round_trip_and_validation():
    cfg = tiny(600, "12", beta=2.5, sigma_mode="fixed")
    again = FactorVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    for bad in [dict(lead_mode="9"), dict(channels=(4,), kernel_sizes=(3, 3)), dict(kernel_sizes=(4, 3)),
                dict(likelihood="bernoulli"), dict(lead_scale=(1.0,) * 8), dict(sigma_min=1.0, sigma_init=0.1)]:
        with pytest.raises(ECGError):
            tiny(**bad)
    with pytest.raises(ECGError):
        FactorVAEConfig.from_dict({**cfg.to_dict(), "surprise": 1})


def test_state_dict_round_trip():
    torch.manual_seed(2)
    vae = FactorVAE(tiny(lead_scale=(0.7,) * 12))
    vae.eval()
    clone = FactorVAE(FactorVAEConfig.from_dict(vae.config.to_dict()))
    clone.load_state_dict(vae.state_dict())
    clone.eval()
    x = torch.randn(2, 12, 120)
    torch.testing.assert_close(clone(x).recon, vae(x).recon)
    assert "log_sigma" in vae.state_dict()  # learned sigma is a weight
    assert not any(k.startswith("adapter.") for k in vae.state_dict())  # scale lives in the config


def test_gaussian_nll_hand():
    x = torch.tensor([[[2.0, 4.0]], [[0.0, 0.0]]])
    recon = torch.zeros_like(x)
    ls = math.log(2.0)
    # record 1: 0.5*(2/2)^2 + ln2 + 0.5*(4/2)^2 + ln2 = 2.5 + 2 ln2 ; record 2: 2 ln2
    expected = (2.5 + 4 * ls) / 2
    assert float(gaussian_nll(recon, x, ls)) == pytest.approx(expected, rel=1e-6)
    # equals torch's Normal log-likelihood plus the dropped 0.5*log(2*pi) per element
    ref = -torch.distributions.Normal(recon, 2.0).log_prob(x).sum((1, 2)).mean() - 2 * 0.5 * math.log(2 * math.pi)
    assert float(gaussian_nll(recon, x, ls)) == pytest.approx(float(ref), rel=1e-6)
    # per-lead sigma broadcasts over (leads, 1)
    x2 = torch.ones(1, 2, 3)
    nll = gaussian_nll(torch.zeros_like(x2), x2, torch.log(torch.tensor([[1.0], [0.5]])))
    assert float(nll) == pytest.approx(3 * 0.5 + 3 * (0.5 * 4 + math.log(0.5)), rel=1e-6)


def test_kl_hand_and_torch_distributions():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    per_dim, total = kl_divergence(mu, logvar)
    assert per_dim.tolist() == pytest.approx([0.5, 0.5 * (1 - math.log(2.0))], rel=1e-6)
    assert float(total) == pytest.approx(0.5 + 0.5 * (1 - math.log(2.0)), rel=1e-6)
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
                                            torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    per_dim, total = kl_divergence(mu, logvar)
    torch.testing.assert_close(per_dim, ref.mean(0))
    torch.testing.assert_close(total, ref.sum(1).mean())


def test_vae_loss_combines_terms():
    x = torch.tensor([[[1.0, 1.0]]])
    out = VAEOutput(recon=x, mu=torch.tensor([[1.0]]), logvar=torch.tensor([[0.0]]), z=torch.tensor([[1.0]]),
                    recon_net=torch.zeros_like(x))
    loss, logs = vae_loss(out, x, beta=3.0, log_sigma=0.0)
    # nll = 0.5 + 0.5 ; kl = 0.5 ; loss = 1 + 3 * 0.5
    assert float(loss) == pytest.approx(2.5)
    assert logs["nll"] == pytest.approx(1.0) and logs["kl"] == pytest.approx(0.5)
    assert logs["mse"] == pytest.approx(1.0) and logs["sigma"] == pytest.approx(1.0) and logs["beta"] == 3.0


def test_vae_loss_with_a_target_scores_the_target():
    torch.manual_seed(1)
    vae = FactorVAE(tiny(latent_dim=4, channels=(8, 16), hidden_dim=16)).eval()
    x = torch.from_numpy(synthetic_beats(3, 120, seed=2))
    target = x + 0.3
    out = vae(x)  # eval: the posterior mean, so the pass is deterministic
    with torch.no_grad():
        own, _ = vae.loss(x, beta=1.0)
        aimed, logs = vae.loss(x, beta=1.0, target=target)
        expected, _ = vae_loss(out, vae.adapter.to_network(target), 1.0, vae.observation_log_sigma(out))
    assert float(aimed) == pytest.approx(float(expected))
    assert float(aimed) != pytest.approx(float(own))
    assert logs["mse"] == pytest.approx(float(torch.mean((out.recon_net - vae.adapter.to_network(target)) ** 2)))


def test_kl_warmup():
    assert kl_warmup(0, 10) == 0.0
    assert kl_warmup(5, 10) == 0.5
    assert kl_warmup(2.5, 10) == 0.25
    assert kl_warmup(15, 10) == 1.0
    assert kl_warmup(3, 0) == 1.0


@pytest.mark.slow
def test_tiny_vae_overfits():
    torch.manual_seed(0)
    beats = torch.from_numpy(synthetic_beats(8, 120, seed=4))
    vae = FactorVAE(tiny(latent_dim=8, channels=(8, 16), hidden_dim=32))
    vae.eval()
    with torch.no_grad():
        before = float(torch.mean((vae(beats).recon - beats) ** 2))
    mean_beat_error = float(torch.mean((beats - beats.mean(0)) ** 2))
    vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for _ in range(300):
        loss, logs = vae.loss(beats, beta=0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    with torch.no_grad():
        after = float(torch.mean((vae(beats).recon - beats) ** 2))
    assert after < before / 5, (before, after)
    assert after < mean_beat_error / 2, (mean_beat_error, after)  # it learned each beat, not just the average
    assert logs["sigma"] < 0.1  # learned noise level shrank with the error


def test_encode_decode_helpers_match_forward():
    torch.manual_seed(5)
    vae = FactorVAE(tiny())
    beats = synthetic_beats(5, 120)
    mu, logvar = encode_beats(vae, beats, batch_size=2)
    assert mu.shape == logvar.shape == (5, 4)
    assert vae.training  # mode restored
    vae.eval()
    with torch.no_grad():
        out = vae(torch.from_numpy(beats))
    np.testing.assert_allclose(mu, out.mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(decode_latents(vae, mu, batch_size=3), out.recon.numpy(), rtol=1e-5, atol=1e-6)


def test_beat_classifier_reuses_encoder():
    torch.manual_seed(6)
    vae_cfg = tiny(600, "8+derived")
    cfg = BeatClassifierConfig.from_vae_config(vae_cfg, n_classes=5)
    model = BeatClassifier(cfg)
    assert type(model.encoder) is BeatEncoder
    vae = FactorVAE(vae_cfg)
    assert [p.shape for p in model.encoder.parameters()] == [p.shape for p in vae.encoder.parameters()]
    x = torch.randn(3, 12, 600)
    logits = model(x)
    assert logits.shape == (3, 5)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(3, 5))
    loss.backward()
    assert model.encoder.convs[0][0].weight.grad is not None
    assert BeatClassifierConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ECGError):
        BeatClassifierConfig(n_classes=0)


def test_gaussian_nll_per_sample_sigma_hand():
    x = torch.tensor([[[1.0, 2.0]]])
    ls = torch.log(torch.tensor([[[0.5, 2.0]]]))
    # 0.5*(1/0.5)^2 + ln 0.5 + 0.5*(2/2)^2 + ln 2 = 2 + 0.5
    assert float(gaussian_nll(torch.zeros_like(x), x, ls)) == pytest.approx(2.5, rel=1e-6)


@pytest.mark.parametrize("mode", ["8+derived", "12"])
def test_per_sample_sigma_decoder(mode):
    torch.manual_seed(0)
    cfg = tiny(lead_mode=mode, sigma_mode="per_sample", sigma_init=0.2, sigma_min=0.05)
    vae = FactorVAE(cfg)
    n = cfg.n_leads
    assert "log_sigma" not in vae.state_dict() and vae.decoder.out.out_channels == 2 * n
    torch.testing.assert_close(vae.decoder.out.bias[n:].detach(), torch.full((n,), math.log(0.2)))
    x = torch.from_numpy(synthetic_beats(3, 120))
    out = vae(x, sample=False)
    assert out.recon.shape == (3, 12, 120) and out.log_sigma_net.shape == (3, n, 120)
    assert torch.equal(vae.decode(out.mu), out.recon)
    ls = vae.observation_log_sigma(out)
    assert float(ls.min()) >= math.log(0.05) - 1e-6
    vae.eval()
    loss, logs = vae.loss(x, beta=2.0)
    expected = gaussian_nll(out.recon_net, vae.adapter.to_network(x), ls) + 2.0 * kl_divergence(out.mu, out.logvar)[1]
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ECGError, match="forward pass"):
        vae.observation_log_sigma()
    with pytest.raises(ECGError, match="sigma_mode"):
        tiny(sigma_mode="per_lead")


def test_per_lead_sigma_weights_keep_their_layout():
    """Checkpoints from before the per-sample option (sigma_mode learned) keep their keys and shapes."""
    vae = FactorVAE(tiny())
    state = vae.state_dict()
    assert state["log_sigma"].shape == (8, 1) and state["decoder.out.weight"].shape[0] == 8
    assert vae(torch.from_numpy(synthetic_beats(2, 120))).log_sigma_net is None
