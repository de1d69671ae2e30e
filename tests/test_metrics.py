"""Metrics: AUROC (hand-computed, against sklearn), Fmax, bootstrap (the redraw rule), calibration, calls at
thresholds, report and reliability figure."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ecglens.errors import ECGError
from ecglens.metrics import (auroc_counts, bootstrap_indices, bootstrap_macro_auroc, brier_scores, calls_at,
                             evaluate_predictions, expected_calibration_errors, fmax, format_table,
                             get_or_make_bootstrap, keeps_labels_scorable, macro_auroc, per_label_auroc,
                             prevalence_baseline, reliability_bins, resample_counts, sample_f1, scorable_labels)

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
    y[:3, 0] = 1  # a rare label: missing from some plain resamples
    idx = bootstrap_indices(200, 80, seed=0)
    r = bootstrap_macro_auroc(y, s, idx, alpha=0.9)
    complete = keeps_labels_scorable(idx, y)
    assert 0 < (~complete).sum() < 80 and r["n_incomplete"] == (~complete).sum()
    assert r["low"] < r["point"] < r["high"]
    assert r["point"] == pytest.approx(macro_auroc(y, s)[0], abs=1e-12)
    assert r["mean_n_scored"] == 4 and r["n_resamples"] == 80
    assert r == bootstrap_macro_auroc(y, s, idx, alpha=0.9)
    # Against brute force: per-resample macro AUROC with sklearn over the complete resamples, then the
    # 5% / 95% quantiles, for the macro and for each label.
    macros, labels = [], []
    for row in idx[complete]:
        yb, sb = y[row], s[row]
        assert all(0 < yb[:, j].sum() < 200 for j in range(4))
        labels.append([roc_auc_score(yb[:, j], sb[:, j]) for j in range(4)])
        macros.append(np.mean(labels[-1]))
    assert np.allclose([r["low"], r["high"]], np.quantile(macros, [0.05, 0.95]), atol=1e-12)
    assert np.allclose(r["per_label"], np.quantile(labels, [0.05, 0.95], axis=0).T, atol=1e-12)
    with pytest.raises(ECGError):
        bootstrap_macro_auroc(y, s, idx[:, :100])


def test_redraw_keeps_every_scored_label_scorable():
    y, _ = _random(n=200, k=4, seed=7)
    y[:, 0] = 0
    y[:3, 0] = 1
    y[:, 3] = 1  # one class only: never scored, so never required
    plain = bootstrap_indices(200, 80, seed=0)
    idx = bootstrap_indices(200, 80, seed=0, y_true=y)
    assert idx.shape == (80, 200) and keeps_labels_scorable(idx, y).all()
    assert not keeps_labels_scorable(plain, y).all()
    # the rows that passed at the first draw are kept as drawn; deterministic in the seed
    passed = plain[keeps_labels_scorable(plain, y)]
    assert np.array_equal(idx[:len(passed)], passed)
    assert np.array_equal(idx, bootstrap_indices(200, 80, seed=0, y_true=y))
    # bounded: too few draws allowed for ten single-positive labels -> a clear error naming the hardest labels
    rare = np.zeros((50, 10), dtype=int)
    rare[np.arange(10), np.arange(10)] = 1
    with pytest.raises(ECGError, match=r"resamples keep every scored label scorable after 200 draws.*0: 1/49"):
        bootstrap_indices(50, 100, seed=0, y_true=rare, max_draws=200)


def test_point_estimate_inside_interval_where_the_plain_draw_put_it_at_the_edge():
    rng = np.random.default_rng(3)
    n = 120
    y, s = np.zeros((n, 8)), rng.random((n, 8))
    for j in (0, 1):  # two common, well-ranked labels
        y[:, j] = rng.random(n) < 0.4
        s[:, j] = 0.6 * y[:, j] + 0.4 * rng.random(n)
    for j in range(2, 8):  # six labels with one positive each, ranked low: they drop out of most plain resamples
        y[3 * j, j], s[3 * j, j] = 1, 0.1 + 0.02 * j
    plain = bootstrap_indices(n, 400, seed=0)
    point = macro_auroc(y, s)[0]
    # The old interval: each resample averaged the labels it happened to keep.
    old = np.nanmean(auroc_counts(y, s, resample_counts(plain, n)), axis=1)
    old_low, old_high = np.quantile(old, [0.05, 0.95])
    assert point < old_low < old_high  # the estimate lay below its own interval
    with pytest.raises(ECGError, match=r"only \d+ of 400 bootstrap resamples keep every scored label"):
        bootstrap_macro_auroc(y, s, plain)  # nearly every plain resample loses a rare label: refused
    r = bootstrap_macro_auroc(y, s, bootstrap_indices(n, 400, seed=0, y_true=y))
    assert r["n_incomplete"] == 0 and r["mean_n_scored"] == 8
    assert r["low"] < point < r["high"] and r["point"] == pytest.approx(point, abs=1e-12)


def test_saved_indices_are_checked_against_the_labels(tmp_path):
    y, _ = _random(n=200, k=4, seed=7)
    y[:, 0] = 0
    y[:3, 0] = 1
    plain = tmp_path / "plain.npy"
    get_or_make_bootstrap(plain, 200, 80)  # drawn without the labels: some rows lose the rare one
    with pytest.raises(ECGError, match="delete the file to redraw"):
        get_or_make_bootstrap(plain, 200, 80, y_true=y)
    kept = get_or_make_bootstrap(tmp_path / "kept.npy", 200, 80, y_true=y)
    assert keeps_labels_scorable(kept, y).all()
    assert np.array_equal(get_or_make_bootstrap(tmp_path / "kept.npy", 200, y_true=y), kept)


def test_calibration_hand_computed():
    # One statement, 5 records, bins of 0.1: p 0.05 and 0.08 (bin 0), 0.55 (bin 5), 0.95 and 1.0 (bin 9).
    y = np.array([[0], [1], [1], [1], [0]])
    p = np.array([[0.05], [0.08], [0.55], [0.95], [1.0]])
    bins = reliability_bins(y, p)
    assert bins["count"][0].tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert bins["mean_predicted"][0, 0] == pytest.approx(0.065) and bins["observed"][0, 0] == 0.5
    assert bins["mean_predicted"][0, 9] == pytest.approx(0.975) and bins["observed"][0, 9] == 0.5
    assert np.isnan(bins["observed"][0, 1])
    # ECE = 2/5 |0.065 - 0.5| + 1/5 |0.55 - 1| + 2/5 |0.975 - 0.5|
    assert expected_calibration_errors(y, p)[0] == pytest.approx(0.4 * 0.435 + 0.2 * 0.45 + 0.4 * 0.475)
    assert brier_scores(y, p)[0] == pytest.approx((0.05**2 + 0.92**2 + 0.45**2 + 0.05**2 + 1.0) / 5)
    perfect = np.array([[0.0], [1.0], [1.0], [0.0]])
    assert expected_calibration_errors(perfect, perfect)[0] == 0 and brier_scores(perfect, perfect)[0] == 0
    with pytest.raises(ECGError, match="outside"):
        brier_scores(y, p * 2)


def test_calls_and_sample_f1_against_sklearn():
    y, s = _random(n=150, k=6, seed=3, decimals=3)
    s = s / s.max()
    thresholds = np.linspace(0.3, 0.8, 6)
    calls = calls_at(s, thresholds)
    assert np.array_equal(calls, s >= thresholds)
    assert sample_f1(y, calls) == pytest.approx(f1_score(y, calls, average="samples", zero_division=1), abs=1e-12)
    assessable = np.array([True, True, False, True, True, False])
    masked = calls_at(s, thresholds, assessable)
    assert not masked[:, ~assessable].any() and np.array_equal(masked[:, assessable], calls[:, assessable])
    assert sample_f1([[0, 0], [1, 0]], [[False, False], [True, True]]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ECGError, match="assessable"):
        calls_at(s, thresholds, assessable.astype(int))


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


def test_report_calibration_and_calls_at_thresholds():
    y, s = _random(n=120, k=4, seed=5, decimals=3)
    s = s / s.max()
    names = ["AFIB", "NORM", "LAO/LAE", "PRC(S)"]
    y[:, 3] = 0  # never seen: not scorable and not assessable
    thresholds, assessable = np.array([0.5, 0.4, 0.6, 0.3]), np.array([True, True, True, False])
    report = evaluate_predictions(y, s, names, bootstrap_indices(120, 50, y_true=y), thresholds=thresholds,
                                  assessable=assessable)
    json.loads(json.dumps(report, allow_nan=False))
    cal = report["calibration"]
    assert cal["n_bins"] == 10 and "equal-width" in cal["binning"] and len(cal["bin_edges"]) == 11
    assert cal["per_label"]["NORM"]["ece"] == pytest.approx(expected_calibration_errors(y, s)[1], abs=1e-12)
    assert cal["brier_mean"] == pytest.approx(brier_scores(y, s).mean(), abs=1e-12)
    assert cal["assessable"]["n_labels"] == 3
    assert cal["assessable"]["ece_mean"] == pytest.approx(expected_calibration_errors(y, s)[:3].mean(), abs=1e-12)
    assert sum(cal["reliability"]["pooled"]["count"]) == 120 * 4
    assert sum(cal["reliability"]["per_label"]["AFIB"]["count"]) == 120
    calls = report["at_thresholds"]
    expected = calls_at(s, thresholds, assessable)
    assert calls["sample_f1"] == pytest.approx(sample_f1(y, expected), abs=1e-12)
    assert calls["all"]["called_per_record"] == pytest.approx(expected.sum(axis=1).mean())
    assert calls["all"]["true_per_record"] == pytest.approx(y.sum(axis=1).mean())
    assert calls["assessable"]["n_labels"] == 3 and calls["per_label"]["PRC(S)"]["n_called"] == 0
    assert calls["per_label"]["AFIB"] == {"threshold": 0.5, "n_called": int(expected[:, 0].sum()),
                                          "n_true_positive": int((expected[:, 0] & (y[:, 0] == 1)).sum()),
                                          "assessable": True}
    boot = report["bootstrap"]
    assert boot["n_incomplete"] == 0 and boot["per_label"]["PRC(S)"] is None
    assert boot["per_label"]["AFIB"]["low"] < report["per_label"]["AFIB"]["auroc"] < boot["per_label"]["AFIB"]["high"]
    table = format_table(report, {"AFIB": "atrial fibrillation"})
    assert "ECE" in table and "Brier" in table and "sample F1" in table and "atrial fibrillation" in table
    assert f"{cal['ece_mean']:.4f}" in table and "over 3 assessable" in table
    # scores that are not probabilities have no calibration; no thresholds, no calls
    plain = evaluate_predictions(y, s * 5 - 1, names)
    assert plain["calibration"] is None and plain["at_thresholds"] is None and "ECE" not in format_table(plain)
    with pytest.raises(ECGError, match="thresholds"):
        evaluate_predictions(y, s, names, thresholds=thresholds[:3])


def test_reliability_figure():
    from ecglens.viz.reliability import plot_reliability

    y, s = _random(n=100, k=3, seed=1, decimals=3)
    report = evaluate_predictions(y, s / s.max(), ["AFIB", "NORM", "STTC"])
    fig = plot_reliability(report["calibration"], ["AFIB", "STTC"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 and titles[0].startswith("all statements") and "atrial fibrillation" in titles[1]
    pooled = fig.axes[0].lines[1]  # the diagonal first, then the observed rates
    shown = [o for o in report["calibration"]["reliability"]["pooled"]["observed"] if o is not None]
    assert np.allclose(pooled.get_ydata(), shown)
    with pytest.raises(ECGError, match="WPW"):
        plot_reliability(report["calibration"], ["WPW"])


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
