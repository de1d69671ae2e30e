"""FactorECG factors: active rule, standardiser, factor models, percentiles, traversals, associations."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from ecglens.errors import ECGError
from ecglens.models.factorecg.factors import RhythmScaler
from ecglens.models.factorecg import (ActiveFactors, FactorModelConfig, FactorModels, FactorStandardizer, FactorVAE,
                                      FactorVAEConfig, active_factors, associate_factors, decode_latents,
                                      describe_factor, factor_percentiles, toward_normal, traverse_factor)
from ecglens.models.factorecg.traverse import traversal_values




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
        est = LogisticRegression(max_iter=2000).fit(z, y[:, fm.statement_index(s)])
        np.testing.assert_allclose(fm.decision_function(z)[:, fm.statement_index(s)], est.decision_function(z), atol=1e-10)
        np.testing.assert_allclose(fm.predict_proba(z)[:, fm.statement_index(s)], est.predict_proba(z)[:, 1], atol=1e-10)
        for row in z[:5]:
            contrib = fm.contributions(row, s)
            assert sorted(c.factor for c in contrib) == [3, 7, 8, 12]  # latent indices, not columns
            total = sum(c.contribution for c in contrib) + fm.intercept[fm.statement_index(s)]
            assert fm.base_value(s) == fm.intercept[fm.statement_index(s)]
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
    with pytest.raises(ECGError):
        FactorModelConfig(kind="svm")


def _fit_sklearn_gbt(z, y, **kw):
    return HistGradientBoostingClassifier(max_iter=kw.get("max_iter", 30), learning_rate=0.1, max_leaf_nodes=7,
                                          min_samples_leaf=20, l2_regularization=0.0, early_stopping=False,
                                          random_state=0).fit(z, y)


def test_gbt_trees_match_sklearn_and_round_trip(tmp_path):
    z, y = _factor_data()
    cfg = FactorModelConfig(kind="gbt", gbt_max_iter=30, gbt_max_leaf_nodes=7)
    gbt = FactorModels(["A", "B", "NEVER", "ALWAYS"], [0, 1, 2, 3], cfg).fit(z, y)
    p = gbt.predict_proba(z)
    assert np.all(p[:, 2] == 0.0) and np.all(p[:, 3] == 1.0)
    for j in (0, 1):  # our node arrays predict what scikit-learn's trees predict
        ref = _fit_sklearn_gbt(z, y[:, j])
        np.testing.assert_allclose(gbt.decision_function(z)[:, j], ref.decision_function(z), atol=1e-9)
        np.testing.assert_allclose(p[:, j], ref.predict_proba(z)[:, 1], atol=1e-9)
    arrays, meta = gbt.to_state()
    save_file(arrays, str(tmp_path / "f.safetensors"))
    again = FactorModels.from_state(load_file(str(tmp_path / "f.safetensors")), json.loads(json.dumps(meta)))
    np.testing.assert_array_equal(again.predict_proba(z), p)
    assert [(c.factor, c.value, c.contribution) for c in again.contributions(z[0], "A")] == \
        [(c.factor, c.value, c.contribution) for c in gbt.contributions(z[0], "A")]
    assert all(math.isnan(c.coefficient) for c in gbt.contributions(z[0], "A"))


def test_gbt_shap_sums_to_logit_minus_expected_value():
    z, y = _factor_data()
    gbt = FactorModels(["A", "B", "NEVER", "ALWAYS"], [3, 7, 8, 12],
                       FactorModelConfig(kind="gbt", gbt_max_iter=40)).fit(z, y)
    logits = gbt.decision_function(z[:10])
    for s in ("A", "B", "NEVER"):
        j = gbt.statement_index(s)
        for i in range(10):
            contrib = gbt.contributions(z[i], s)
            assert sorted(c.factor for c in contrib) == [3, 7, 8, 12]
            total = gbt.base_value(s) + sum(c.contribution for c in contrib)
            assert total == pytest.approx(logits[i, j], abs=1e-9)
    # A depends on columns 0 and 2 only: they carry most of its attribution
    shap = np.array([[c.contribution for c in sorted(gbt.contributions(r, "A"), key=lambda c: c.factor)] for r in z[:50]])
    assert np.abs(shap[:, [0, 2]]).mean() > 3 * np.abs(shap[:, [1, 3]]).mean()
    # the expected value is the cover-weighted mean logit; with training counts as cover it is the training mean
    ev = gbt.base_value("A")
    assert ev == pytest.approx(float(gbt.decision_function(z)[:, 0].mean()), abs=0.05)


def test_tree_shap_equals_shapley_definition():
    """Exact Shapley values of the path-dependent expectation f_S(x), enumerated over every subset."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(400, 4))
    y = ((z[:, 0] * z[:, 1] + z[:, 2] > 0) ^ (rng.random(400) < 0.1)).astype(int)[:, None]
    fm = FactorModels(["A"], [0, 1, 2, 3], FactorModelConfig(kind="gbt", gbt_max_iter=3, gbt_max_leaf_nodes=6,
                                                             gbt_min_samples_leaf=5)).fit(z, y)
    t = fm.trees

    def f_subset(x, subset):
        def g(node):
            if t.feature[node] < 0:
                return t.value[node]
            if t.feature[node] in subset:
                return g(t.left[node] if x[t.feature[node]] <= t.threshold[node] else t.right[node])
            return (t.cover[t.left[node]] * g(t.left[node]) + t.cover[t.right[node]] * g(t.right[node])) / t.cover[node]
        return t.baseline[0] + sum(g(r) for r in t.start)

    m = 4
    for x in z[:5]:
        want = np.zeros(m)
        for i in range(m):
            others = [k for k in range(m) if k != i]
            for size in range(m):
                for subset in itertools.combinations(others, size):
                    w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                    want[i] += w * (f_subset(x, set(subset) | {i}) - f_subset(x, set(subset)))
        np.testing.assert_allclose(t.shap(x, 0), want, atol=1e-10)
        assert f_subset(x, set()) == pytest.approx(t.expected_value(0), abs=1e-10)


def test_factor_models_with_rhythm_features():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(400, 3))
    raw = np.column_stack([rng.gamma(2.0, 40.0, 400), rng.uniform(50, 110, 400)])  # rmssd_ms, heart rate
    raw[:7, 0] = np.nan
    scaler = RhythmScaler.fit(raw, ["rmssd_ms", "heart_rate_bpm"])
    r = scaler.transform(raw)
    assert np.all(np.isfinite(r))
    assert r[:7, 0] == pytest.approx(np.full(7, (scaler.median[0] - scaler.mean[0]) / scaler.std[0]))
    assert r[:, 1].mean() == pytest.approx(0.0, abs=1e-9)
    assert scaler.transform([[1e6, 80.0]])[0, 0] == pytest.approx((scaler.high[0] - scaler.mean[0]) / scaler.std[0])
    assert RhythmScaler.from_dict(json.loads(json.dumps(scaler.to_dict()))) == scaler
    y = (rng.random(400) < 1 / (1 + np.exp(-(2 * r[:, 0] + z[:, 1])))).astype(int)[:, None]
    fm = FactorModels(["AFIB"], [4, 9, 11], features=["rmssd_ms", "heart_rate_bpm"]).fit(np.hstack([z, r]), y)
    assert fm.inputs == [4, 9, 11, "rmssd_ms", "heart_rate_bpm"]
    row = np.hstack([z, r])[0]
    contrib = fm.contributions(row, "AFIB")
    assert {c.factor for c in contrib} == {4, 9, 11, "rmssd_ms", "heart_rate_bpm"}
    assert fm.base_value("AFIB") + sum(c.contribution for c in contrib) == pytest.approx(
        fm.decision_function(row)[0, 0], abs=1e-10)
    top = max(contrib, key=lambda c: abs(c.coefficient))
    assert top.factor == "rmssd_ms"
    arrays, meta = fm.to_state()
    assert FactorModels.from_state(arrays, meta).features == ["rmssd_ms", "heart_rate_bpm"]
    old_meta = {k: v for k, v in meta.items() if k != "features"}  # checkpoints from before rhythm features
    with pytest.raises(ECGError):
        FactorModels.from_state(arrays, old_meta)
    with pytest.raises(ECGError):
        fm.predict_proba(z)


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


def test_traversal_values_include_the_patient():
    v, i = traversal_values(-4.3)  # outside the drawn range: the range widens to reach it
    assert len(v) == 7 and i == 0 and v[0] == -4.3 and v[-1] == 3.0
    v, i = traversal_values(1.0)  # on a step already: kept once
    assert len(v) == 7 and v[i] == 1.0 and len(set(v)) == 7
    v, i = traversal_values(0.4)  # between steps: inserted in order
    assert len(v) == 8 and v[i] == 0.4 and np.all(np.diff(v) > 0) and v[0] == -3.0 and v[-1] == 3.0
    with pytest.raises(ECGError):
        traversal_values(float("nan"))
    # drawn at the patient's index is the patient's own decoded beat
    dec = LinearDecoder()
    base, mean, sd = np.array([0.3, -9.0, 0.5]), 0.1, 2.0
    values, i = traversal_values((base[1] - mean) / sd)
    assert values[0] == pytest.approx(-4.55)
    beats = traverse_factor(dec, base, 1, values, std=sd, center=mean)
    np.testing.assert_allclose(beats[i], decode_latents(dec, base)[0], atol=1e-5)


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
    # with a rhythm feature as a third input (coefficient 3): it is held at the patient's value
    fr = FactorModels.from_state({"coef": np.array([[1.0, 2.0, 3.0]]), "intercept": np.array([0.5]),
                                  "prevalence": np.array([0.3])},
                                 {"statements": ["LVH"], "factor_indices": [0, 2], "features": ["rr_cv"],
                                  "config": FactorModelConfig().to_dict(), "single_class": {}})
    path3 = toward_normal(dec, fr, st, z, "LVH", n_steps=5, extra=np.array([0.4]))
    assert path3.factor == 0
    np.testing.assert_allclose(path3.logits, 0.5 + np.linspace(2.0, 0.0, 5) + 1.0 + 1.2)
    with pytest.raises(ECGError):
        toward_normal(dec, fr, st, z, "LVH")  # the rhythm input is missing


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
