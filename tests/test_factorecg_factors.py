"""FactorECG factors: active rule, standardiser, factor models, percentiles, traversals, associations."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from ecglens.errors import ECGError
from ecglens.models.factorecg import (ActiveFactors, FactorModelConfig, FactorModels, FactorStandardizer, FactorVAE,
                                      FactorVAEConfig, active_factors, associate_factors, decode_latents,
                                      describe_factor, factor_percentiles, toward_normal, traverse_factor)




def test_active_factors_hand_made():
    # dim 0: mu = +-1, var 1 -> KL 0.5, var(mu) 1      (active under both rules)
    # dim 1: mu = 0, var 1   -> KL 0,   var(mu) 0      (collapsed to the prior)
    # dim 2: mu = 0, var 1/2 -> KL 0.5*(0.5-1+ln2),    var(mu) 0 (active by KL only)
    mu = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    logvar = np.array([[0.0, 0.0, math.log(0.5)]] * 2)
    kl_rule = active_factors(mu, logvar, rule="kl", threshold=0.01)
    assert kl_rule.kl_per_dim == pytest.approx([0.5, 0.0, 0.5 * (0.5 - 1 + math.log(2))])
    assert kl_rule.mu_variance == pytest.approx([1.0, 0.0, 0.0])
    assert kl_rule.indices == [0, 2] and kl_rule.n_active == 2
    var_rule = active_factors(mu, logvar, rule="mu_variance", threshold=0.01)
    assert var_rule.indices == [0] and var_rule.scores == var_rule.mu_variance
    assert ActiveFactors.from_dict(json.loads(json.dumps(kl_rule.to_dict()))) == kl_rule
    assert active_factors(mu, logvar, threshold=0.2).indices == [0]
    with pytest.raises(ECGError):
        active_factors(mu, logvar, rule="entropy")
    with pytest.raises(ECGError):
        active_factors(mu, logvar[:, :2])


def test_standardizer():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(50, 5)) * [1, 2, 3, 4, 5] + [0, 1, 2, 3, 4]
    st = FactorStandardizer.fit(mu, [1, 3])
    z = st.transform(mu)
    assert z.shape == (50, 2)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-12)
    back = st.to_latent(z, base=mu[0])
    np.testing.assert_allclose(back[:, [1, 3]], mu[:, [1, 3]], atol=1e-12)
    np.testing.assert_allclose(back[:, 0], mu[0, 0])  # inactive dims from the base
    assert np.all(st.to_latent(z)[:, [0, 2, 4]] == 0)
    assert FactorStandardizer.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    mu[:, 2] = 1.0
    with pytest.raises(ECGError):
        FactorStandardizer.fit(mu, [2])
    with pytest.raises(ECGError):
        st.transform(mu[:, :4])


def _factor_data(n=300, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    logit_a = 2.0 * z[:, 0] - 1.5 * z[:, 2]
    y = np.zeros((n, 4), dtype=int)
    y[:, 0] = rng.random(n) < 1 / (1 + np.exp(-logit_a))
    y[:, 1] = rng.random(n) < 1 / (1 + np.exp(-(z[:, 1] - 1)))
    y[:, 2] = 0  # never present in training
    y[:, 3] = 1  # always present
    return z, y


def test_factor_models_contribution_invariant(tmp_path):
    z, y = _factor_data()
    fm = FactorModels(["A", "B", "NEVER", "ALWAYS"], factor_indices=[3, 7, 8, 12]).fit(z, y)
    assert fm.single_class == {"NEVER": 0.0, "ALWAYS": 1.0}
    assert fm.report()["n_fitted"] == 2
    for s in ("A", "B"):
        est = fm.estimators[s]
        np.testing.assert_allclose(fm.decision_function(z)[:, fm.statement_index(s)], est.decision_function(z), atol=1e-10)
        np.testing.assert_allclose(fm.predict_proba(z)[:, fm.statement_index(s)], est.predict_proba(z)[:, 1], atol=1e-10)
        for row in z[:5]:
            contrib = fm.contributions(row, s)
            assert sorted(c.factor for c in contrib) == [3, 7, 8, 12]  # latent indices, not columns
            total = sum(c.contribution for c in contrib) + fm.intercept[fm.statement_index(s)]
            assert total == pytest.approx(float(est.decision_function(row[None])[0]), abs=1e-10)
            mags = [abs(c.contribution) for c in contrib]
            assert mags == sorted(mags, reverse=True)
            assert all(c.contribution == pytest.approx(c.coefficient * c.value) for c in contrib)
    # A was generated as 2*col0 - 1.5*col2: the fitted signs and sizes follow
    coef_a = fm.coef[0]
    assert coef_a[0] > 1.0 and coef_a[2] < -0.8 and abs(coef_a[1]) < 0.5
    probs = fm.predict_proba(z)
    assert probs.shape == (300, 4)
    assert np.all(probs[:, 2] == 0.0) and np.all(probs[:, 3] == 1.0)
    # safetensors + JSON round trip
    arrays, meta = fm.to_state()
    save_file(arrays, str(tmp_path / "factors.safetensors"))
    (tmp_path / "factors.json").write_text(json.dumps(meta))
    again = FactorModels.from_state(load_file(str(tmp_path / "factors.safetensors")),
                                    json.loads((tmp_path / "factors.json").read_text()))
    np.testing.assert_array_equal(again.predict_proba(z), probs)
    assert again.contributions(z[0], "A") == fm.contributions(z[0], "A")
    with pytest.raises(ECGError):
        fm.contributions(z[0], "C")
    with pytest.raises(ECGError):
        fm.fit(z, y[:, :3])


def test_factor_models_balanced_and_gbt():
    z, y = _factor_data()
    balanced = FactorModels(["A", "B", "NEVER", "ALWAYS"], [0, 1, 2, 3],
                            FactorModelConfig(class_weight="balanced", C=0.5)).fit(z, y)
    plain = FactorModels(["A", "B", "NEVER", "ALWAYS"], [0, 1, 2, 3]).fit(z, y)
    # B is rare (~30%): balancing the classes raises its intercept
    assert balanced.intercept[1] > plain.intercept[1]
    gbt = FactorModels(["A", "B", "NEVER", "ALWAYS"], [0, 1, 2, 3], FactorModelConfig(kind="gbt", gbt_max_iter=30)).fit(z, y)
    p = gbt.predict_proba(z)
    assert p.shape == (300, 4) and np.all((p >= 0) & (p <= 1))
    assert np.all(p[:, 2] == 0.0)
    auc_like = p[y[:, 0] == 1, 0].mean() - p[y[:, 0] == 0, 0].mean()
    assert auc_like > 0.2
    with pytest.raises(ECGError):
        gbt.to_state()
    with pytest.raises(ECGError):
        gbt.contributions(z[0], "A")
    with pytest.raises(ECGError):
        FactorModelConfig(kind="svm")


def test_factor_percentiles_hand():
    ref = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    assert factor_percentiles(np.array([2.5, 40.0]), ref).tolist() == [50.0, 87.5]
    out = factor_percentiles(np.array([[0.0, 100.0], [2.0, 10.0]]), ref)
    assert out.tolist() == [[0.0, 100.0], [37.5, 12.5]]
    with pytest.raises(ECGError):
        factor_percentiles(np.zeros(3), ref)


class LinearDecoder(torch.nn.Module):
    """decode(z) = z @ W + b reshaped to (12, T): a beat that is linear in each factor."""

    def __init__(self, latent_dim=3, samples=20, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(latent_dim, 12 * samples, generator=g))
        self.b = torch.nn.Parameter(torch.randn(12 * samples, generator=g))
        self.samples = samples

    def decode(self, z):
        return (z @ self.W + self.b).view(len(z), 12, self.samples)


def test_traverse_linear_decoder_monotonic():
    dec = LinearDecoder()
    base = np.array([0.3, -0.2, 0.5])
    beats = traverse_factor(dec, base, 1, std=2.0)
    assert beats.shape == (7, 12, 20)
    steps = np.diff(beats, axis=0)  # each step moves z[1] by 2.0
    w = dec.W.detach().numpy()[1].reshape(12, 20)
    np.testing.assert_allclose(steps, np.broadcast_to(2.0 * w, steps.shape), atol=1e-4)
    assert np.all(np.sign(steps) == np.sign(w))  # every sample moves monotonically, in the direction of W
    np.testing.assert_allclose(beats[3], decode_latents(dec, base)[0], atol=1e-6)
    centred = traverse_factor(dec, base, 1, values=[0.0], std=2.0, center=1.0)
    np.testing.assert_allclose(centred[0], decode_latents(dec, [0.3, 1.0, 0.5])[0], atol=1e-6)
    with pytest.raises(ECGError):
        traverse_factor(dec, base, 3)


def test_traverse_real_vae_shapes():
    torch.manual_seed(0)
    vae = FactorVAE(FactorVAEConfig(latent_dim=4, channels=(4, 8), kernel_sizes=(5, 3), hidden_dim=16))
    beats = traverse_factor(vae, np.zeros(4), 2, values=np.linspace(-3, 3, 5), std=0.5)
    assert beats.shape == (5, 12, 120)
    assert not np.allclose(beats[0], beats[-1])
    np.testing.assert_array_equal(beats[:, 2], beats[:, 1] - beats[:, 0])  # III = II - I on traversals too


def test_toward_normal_linear_case():
    dec = LinearDecoder(latent_dim=3)
    mu = np.random.default_rng(2).normal(size=(100, 3)) * [1.0, 2.0, 3.0]
    st = FactorStandardizer.fit(mu, [0, 2])
    # statement logit = 0.5 + 1.0*f0 + 2.0*f2 (standardised); patient at f0=+2, f2=+0.5
    fm = FactorModels.from_state({"coef": np.array([[1.0, 2.0]]), "intercept": np.array([0.5]),
                                  "prevalence": np.array([0.3])},
                                 {"statements": ["LVH"], "factor_indices": [0, 2],
                                  "config": FactorModelConfig().to_dict(), "single_class": {}})
    z = st.to_latent(np.array([[2.0, 0.5]]), base=np.array([0.0, 0.7, 0.0]))[0]
    path = toward_normal(dec, fm, st, z, "LVH", n_steps=5)
    # moving f0 to 0 lowers the logit by 2.0, f2 only by 1.0 -> factor latent 0
    assert path.factor == 0
    np.testing.assert_allclose(path.values_std, np.linspace(2.0, 0.0, 5))
    np.testing.assert_allclose(path.logits, 0.5 + np.linspace(2.0, 0.0, 5) + 1.0)
    assert np.all(np.diff(path.probabilities) < 0)
    assert path.beats.shape == (5, 12, 20)
    np.testing.assert_allclose(path.beats[0], decode_latents(dec, z)[0], atol=1e-5)
    np.testing.assert_allclose(path.values_latent[-1], st.mean[0])
    # a NORM target that sits far on the low side of f2 makes f2 the better move
    path2 = toward_normal(dec, fm, st, z, "LVH", target_std=np.array([2.0, -1.5]), n_steps=3)
    assert path2.factor == 2 and path2.values_std[-1] == -1.5
    assert path2.logits[-1] == pytest.approx(0.5 + 2.0 + 2.0 * -1.5)
    assert toward_normal(dec, fm, st, z, "LVH", factor=2).factor == 2
    json.dumps(path.to_dict())


def test_associate_and_describe():
    rng = np.random.default_rng(3)
    n = 200
    qrs = rng.normal(100, 15, n)
    ramp = rng.normal(1.5, 0.4, n)
    factors = np.column_stack([qrs / 50.0 - 2.0, -np.exp(ramp), rng.normal(size=n)])
    props = np.column_stack([qrs, ramp, rng.normal(size=n)])
    props[:10, 2] = np.nan  # failed measurements are dropped pairwise
    table = associate_factors(factors, props, [0, 1, 2], ["QRS duration", "R amplitude V5", "noise"])
    assert len(table) == 9
    rho = table.set_index(["factor", "property"])["rho"]
    assert rho[(0, "QRS duration")] == pytest.approx(1.0)
    assert rho[(1, "R amplitude V5")] == pytest.approx(-1.0)  # monotone decreasing transform
    assert abs(rho[(2, "QRS duration")]) < 0.25
    assert table.set_index(["factor", "property"])["n"][(0, "noise")] == n - 10
    assert describe_factor(table, 0, top=1) == "factor 0: ↑ QRS duration (ρ=1.00)"
    assert describe_factor(table, 1, top=1) == "factor 1: ↓ R amplitude V5 (ρ=-1.00)"
    assert describe_factor(table, 2, min_abs_rho=0.5) == "factor 2: no property with |ρ| ≥ 0.5"
    with pytest.raises(ECGError):
        describe_factor(table, 9)
    with pytest.raises(ECGError):
        associate_factors(factors, props[:5], [0, 1, 2], ["a", "b", "c"])
