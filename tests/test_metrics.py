"""Metrics: AUROC (hand-computed, against sklearn), Fmax, bootstrap, report."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecglens.errors import ECGError
from ecglens.metrics import (auroc_counts, bootstrap_indices, bootstrap_macro_auroc, evaluate_predictions, fmax,
                             format_table, get_or_make_bootstrap, macro_auroc, per_label_auroc, prevalence_baseline,
                             resample_counts, scorable_labels)

# Column 0: positives 0.35, 0.8 against negatives 0.1, 0.4 -> 3 of 4 pairs concordant: 0.75.
# Column 1: positives 0.5, 0.9 against negatives 0.2, 0.5 -> 3 concordant + 1 tie (half): 3.5/4 = 0.875.
# Column 2: all negative -> no AUROC.
Y = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]])
S = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.1], [0.35, 0.5, 0.2], [0.8, 0.9, 0.4]])


def _random(n=300, k=8, seed=0, decimals=1):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < np.linspace(0.03, 0.5, k)).astype(int)
    s = np.round(y * 0.3 + rng.random((n, k)), decimals)  # rounding makes many ties
    return y, s


def test_auroc_hand_computed():
    assert scorable_labels(Y).tolist() == [True, True, False]
    assert per_label_auroc(Y, S, ["A", "B", "C"]) == {"A": 0.75, "B": 0.875, "C": None}
    value, n_scored = macro_auroc(Y, S)
    assert n_scored == 2
    assert value == pytest.approx((0.75 + 0.875) / 2, abs=1e-15)
    assert np.allclose(auroc_counts(Y, S, np.ones((1, 4)))[0, :2], [0.75, 0.875])
    assert np.isnan(auroc_counts(Y, S, np.ones((1, 4)))[0, 2])


def test_auroc_counts_weights_are_repeats():
    # Record 0 (a negative at 0.1) entering twice adds one more concordant pair to each positive.
    got = auroc_counts(Y[:, :1], S[:, :1], [[2, 1, 1, 1]])[0, 0]
    assert got == pytest.approx(5 / 6, abs=1e-15)


def test_macro_auroc_matches_sklearn_random():
    y, s = _random()
    y[:, 0] = 0  # one label without positives
    value, n_scored = macro_auroc(y, s)
    mask = scorable_labels(y)
    assert n_scored == mask.sum() == y.shape[1] - 1
    assert value == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in np.flatnonzero(mask)]), abs=1e-12)


def test_fast_auroc_equals_sklearn_on_resamples_with_ties():
    y, s = _random(n=120, k=6, seed=3)
    idx = bootstrap_indices(120, 40, seed=5)
    fast = auroc_counts(y, s, resample_counts(idx, 120))
    checked = 0
    for b in range(idx.shape[0]):
        yb, sb = y[idx[b]], s[idx[b]]
        for j in range(y.shape[1]):
            if 0 < yb[:, j].sum() < len(yb):
                assert abs(fast[b, j] - roc_auc_score(yb[:, j], sb[:, j])) < 1e-12
                checked += 1
            else:
                assert np.isnan(fast[b, j])
    assert checked > 200


def test_fmax_hand_computed():
    # thresholds 0.25 / 0.5 / 0.75; record 3 has no true label: it counts for precision, never for recall.
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.8], [0.3, 0.1]])
    # t=0.25: precision (1 + 1/2 + 1 + 0)/4 = 0.625, recall 1 -> F = 0.769
    # t=0.50: precision (1 + 1/2 + 1)/3, recall (1 + 1 + 1/2)/3 -> F = 5/6
    # t=0.75: precision (1 + 1)/2, recall (1 + 0 + 1/2)/3 -> F = 2/3
    value, threshold = fmax(y, s, thresholds=[0.25, 0.5, 0.75])
    assert value == pytest.approx(5 / 6, abs=1e-12)
    assert threshold == 0.5
    assert fmax(y, s, thresholds=[0.25])[0] == pytest.approx(2 * 0.625 / 1.625, abs=1e-12)
    assert fmax(y, s, thresholds=[0.85]) == (0.5, 0.85)  # precision 1, recall (1 + 0 + 0)/3
    assert np.isnan(fmax(y, s, thresholds=[0.95])[0])     # nothing predicted: no precision
    assert fmax(y, y * 0.9 + 0.05)[0] == 1.0               # perfect ranking, default thresholds


def test_prevalence_baseline():
    y_train = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 1]])
    base = prevalence_baseline(y_train, 5)
    assert base.shape == (5, 3)
    assert np.allclose(base, [[0.5, 0.25, 1.0]] * 5)
    y, _ = _random(n=50, k=3)
    assert macro_auroc(y, prevalence_baseline(y_train, 50)) == (0.5, 3)
    with pytest.raises(ECGError):
        prevalence_baseline(np.zeros((0, 3)), 5)


def test_bootstrap_indices_file(tmp_path):
    a = bootstrap_indices(50, 20, seed=1)
    assert a.shape == (20, 50) and a.min() >= 0 and a.max() < 50
    assert np.array_equal(a, bootstrap_indices(50, 20, seed=1))
    assert not np.array_equal(a, bootstrap_indices(50, 20, seed=2))
    path = tmp_path / "boot" / "fold10.npy"
    first = get_or_make_bootstrap(path, 50, 20, seed=1)
    assert path.is_file() and np.array_equal(first, a)
    again = get_or_make_bootstrap(path, 50, seed=99)  # read back, not redrawn
    assert np.array_equal(again, first)
    with pytest.raises(ECGError, match="49"):
        get_or_make_bootstrap(path, 49)
    with pytest.raises(ECGError, match="resamples"):
        get_or_make_bootstrap(path, 50, n_resamples=10)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(ECGError):
        get_or_make_bootstrap(bad, 50)


def test_bootstrap_interval():
    y, s = _random(n=200, k=4, seed=7)
    y[:, 0] = 0
    y[:3, 0] = 1  # a rare label: missing from some resamples
    idx = bootstrap_indices(200, 80, seed=0)
    r = bootstrap_macro_auroc(y, s, idx, alpha=0.9)
    assert r["low"] < r["point"] < r["high"]
    assert r["point"] == pytest.approx(macro_auroc(y, s)[0], abs=1e-12)
    assert 3 < r["mean_n_scored"] < 4 and r["n_resamples"] == 80 and r["n_unscorable"] == 0
    assert r == bootstrap_macro_auroc(y, s, idx, alpha=0.9)
    # Against brute force: per-resample macro AUROC with sklearn, then the 5% / 95% quantiles.
    macros = []
    for row in idx:
        yb, sb = y[row], s[row]
        macros.append(np.mean([roc_auc_score(yb[:, j], sb[:, j]) for j in range(4) if 0 < yb[:, j].sum() < 200]))
    assert np.allclose([r["low"], r["high"]], np.quantile(macros, [0.05, 0.95]), atol=1e-12)
    with pytest.raises(ECGError):
        bootstrap_macro_auroc(y, s, idx[:, :100])


def test_evaluate_predictions_report():
    y, s = _random(n=80, k=4, seed=2)
    y[:, 3] = 1
    names = ["AFIB", "NORM", "STTC", "SR"]
    report = evaluate_predictions(y, s, names, bootstrap_indices(80, 50), y_train=y[:40])
    json.loads(json.dumps(report, allow_nan=False))
    assert report["n_records"] == 80 and report["n_labels"] == 4 and report["n_scored"] == 3
    assert report["excluded"] == {"count": 1, "labels": [{"label": "SR", "reason": "no negative records"}]}
    assert report["per_label"]["SR"] == {"auroc": None, "n_positive": 80}
    assert report["macro_auroc"] == pytest.approx(macro_auroc(y, s)[0], abs=1e-15)
    assert report["fmax"]["value"] == fmax(y, s)[0]
    assert report["bootstrap"]["n_resamples"] == 50
    assert report["prevalence_baseline"]["macro_auroc"] == 0.5
    assert report["prevalence_baseline"]["n_train"] == 40
    table = format_table(report)
    assert f"{report['macro_auroc']:.4f}" in table and "SR (no negative records)" in table
    with pytest.raises(ECGError):
        evaluate_predictions(y, s, names[:3])


def test_bad_inputs():
    with pytest.raises(ECGError):
        macro_auroc(Y, S[:, :2])
    with pytest.raises(ECGError):
        macro_auroc(Y * 2, S)
    with pytest.raises(ECGError):
        macro_auroc(Y, np.where(Y, np.nan, S))


@pytest.mark.ptbxl
def test_fold10_all_scorable(ptbxl_dir):
    from ecglens.datasets import PTBXL

    table = PTBXL(ptbxl_dir).labels("all", 10)
    assert table.y.shape[1] == 71
    assert int(scorable_labels(table.y).sum()) == 59
