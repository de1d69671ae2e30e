"""Calibration of predicted probabilities: Brier score, expected calibration error, reliability bins.

Binning: ``n_bins`` (default 10) equal-width bins on [0, 1]; bin ``b`` holds the
probabilities in ``[b / n_bins, (b + 1) / n_bins)`` and the last bin also holds
1.0. For one statement over ``n`` records, with ``n_b`` records in bin ``b``:

- Brier score: the mean of ``(p - y) ** 2``;
- expected calibration error (ECE): ``sum over bins of |mean p in b - observed
  rate in b| * n_b / n``;
- reliability data: per bin the mean predicted probability, the observed rate
  (fraction of positives) and the count; empty bins have no mean or rate.
"""
from __future__ import annotations

import numpy as np

from ..errors import ECGError
from .classification import check_pair

DEFAULT_BINS = 10
BINNING = ("{n} equal-width bins on [0, 1] (the last includes 1); ECE = sum over bins of "
           "|mean predicted - observed rate| x share of records in the bin")


def check_probabilities(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    """``check_pair``, and the scores must be probabilities in [0, 1]."""
    t, p = check_pair(y_true, y_prob)
    if ((p < 0) | (p > 1)).any():
        raise ECGError(None, f"{int(((p < 0) | (p > 1)).sum())} scores lie outside [0, 1]: not probabilities")
    return t, p


def bin_of(p: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Equal-width bin index of each probability (0 .. n_bins - 1; 1.0 falls in the last bin)."""
    if n_bins < 1:
        raise ECGError(None, f"n_bins must be at least 1, got {n_bins}")
    return np.minimum(np.floor(np.asarray(p) * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(y_true, y_prob, n_bins: int = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """Per statement and bin: ``count``, ``mean_predicted`` and ``observed`` (k, n_bins); NaN in empty bins.

    Also ``sum_predicted`` and ``sum_observed`` (k, n_bins), from which pooled
    bins over several statements are sums.
    """
    t, p = check_probabilities(y_true, y_prob)
    k = t.shape[1]
    flat = (bin_of(p, n_bins) + n_bins * np.arange(k)[None, :]).ravel()
    size = k * n_bins
    count = np.bincount(flat, minlength=size).reshape(k, n_bins).astype(np.float64)
    sum_p = np.bincount(flat, weights=p.ravel(), minlength=size).reshape(k, n_bins)
    sum_y = np.bincount(flat, weights=t.ravel(), minlength=size).reshape(k, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"count": count, "sum_predicted": sum_p, "sum_observed": sum_y,
                "mean_predicted": sum_p / count, "observed": sum_y / count}


def brier_scores(y_true, y_prob) -> np.ndarray:
    """(k,) Brier score of each statement: the mean squared difference of probability and outcome."""
    t, p = check_probabilities(y_true, y_prob)
    return ((p - t) ** 2).mean(axis=0)


def expected_calibration_errors(y_true, y_prob, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """(k,) ECE of each statement: ``sum_b |sum p_b - sum y_b| / n`` (= share-weighted |mean p - rate|)."""
    return _ece(reliability_bins(y_true, y_prob, n_bins))


def _ece(bins: dict[str, np.ndarray]) -> np.ndarray:
    return np.abs(bins["sum_predicted"] - bins["sum_observed"]).sum(axis=1) / bins["count"].sum(axis=1)


def calibration_report(y_true, y_prob, names: list[str], n_bins: int = DEFAULT_BINS, assessable=None) -> dict:
    """JSON-ready calibration of every statement: Brier and ECE per statement, their means over all
    statements (and over the ``assessable`` ones when a mask is given), and reliability-diagram data per
    statement and pooled over all (record, statement) pairs."""
    t, p = check_probabilities(y_true, y_prob)
    bins = reliability_bins(t, p, n_bins)
    brier, ece = brier_scores(t, p), _ece(bins)
    pooled_count = bins["count"].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = {"mean_predicted": bins["sum_predicted"].sum(axis=0) / pooled_count,
                  "observed": bins["sum_observed"].sum(axis=0) / pooled_count}
    report = {
        "binning": BINNING.format(n=n_bins),
        "n_bins": int(n_bins),
        "bin_edges": [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)],
        "brier_mean": float(brier.mean()),
        "ece_mean": float(ece.mean()),
        "assessable": None,
        "per_label": {name: {"brier": float(brier[j]), "ece": float(ece[j])} for j, name in enumerate(names)},
        "reliability": {
            "pooled": _bin_columns(pooled["mean_predicted"], pooled["observed"], pooled_count),
            "per_label": {name: _bin_columns(bins["mean_predicted"][j], bins["observed"][j], bins["count"][j])
                          for j, name in enumerate(names)},
        },
    }
    if assessable is not None and assessable.any():
        report["assessable"] = {"n_labels": int(assessable.sum()), "brier_mean": float(brier[assessable].mean()),
                                "ece_mean": float(ece[assessable].mean())}
    return report


def _bin_columns(mean_predicted, observed, count) -> dict[str, list]:
    """One statement's (or the pool's) bins as JSON columns; None where a bin is empty."""
    def column(values):
        return [None if np.isnan(v) else float(v) for v in values]

    return {"mean_predicted": column(mean_predicted), "observed": column(observed),
            "count": [int(c) for c in count]}
