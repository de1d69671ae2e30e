"""Multi-label classification metrics: macro AUROC, per-label AUROC, sample-centric Fmax.

All functions take ``y_true`` (n records x k labels, 0/1) and ``y_score`` (n x k,
higher = more likely positive). A label whose column holds only one class has
no AUROC; it is left out of the macro mean and the callers report how many
labels were scored, never silently averaging over fewer.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from ..errors import ECGError

# CAFA's thresholds: 0.01, 0.02, ..., 1.00.
DEFAULT_THRESHOLDS = np.round(np.arange(1, 101) / 100.0, 2)


def check_pair(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a (labels, scores) pair to 2-D float64 arrays of equal shape."""
    t = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if t.ndim != 2 or t.shape != s.shape:
        raise ECGError(None, f"labels shaped {t.shape} and scores shaped {s.shape} differ (need records x labels)")
    if t.shape[0] == 0:
        raise ECGError(None, "no records to score")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ECGError(None, "labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ECGError(None, f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    return t, s


def scorable_labels(y_true) -> np.ndarray:
    """Boolean mask of the labels (columns) that have at least one positive and one negative."""
    t = np.asarray(y_true)
    if t.ndim == 1:
        t = t[:, None]
    pos = (t == 1).sum(axis=0)
    return (pos > 0) & (pos < t.shape[0])


def auroc_counts(y_true, y_score, counts) -> np.ndarray:
    """AUROC of every label under each row of record multiplicities ``counts`` (B x n).

    The Mann-Whitney form of the AUROC, ``P(score_pos > score_neg) + P(tie) / 2``,
    with record i entering ``counts[b, i]`` times: a bootstrap resample is a row
    of counts, so B resamples cost one sort per label plus a cumulative sum of
    the negatives' counts in score order, read off at each positive's rank
    (strictly below and up to its score). Exact (integer sums in float64), equal
    to sklearn's ``roc_auc_score`` on the resampled arrays. Returns (B, k); NaN
    where a resample holds only one class of a label.
    """
    t, s = check_pair(y_true, y_score)
    w = np.asarray(counts, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != t.shape[0]:
        raise ECGError(None, f"counts shaped {w.shape} do not cover {t.shape[0]} records")
    out = np.full((w.shape[0], t.shape[1]), np.nan)
    cum = np.zeros((w.shape[0], t.shape[0] + 1))
    for j in range(t.shape[1]):
        pos, neg = np.flatnonzero(t[:, j] == 1), np.flatnonzero(t[:, j] == 0)
        if not len(pos) or not len(neg):
            continue
        neg = neg[np.argsort(s[neg, j], kind="stable")]
        below = np.searchsorted(s[neg, j], s[pos, j], side="left")   # negatives scored lower
        upto = np.searchsorted(s[neg, j], s[pos, j], side="right")   # ... lower or tied
        np.cumsum(w[:, neg], axis=1, out=cum[:, 1:len(neg) + 1])     # cum[:, m]: count of the m lowest
        w_pos = w[:, pos]
        u = 0.5 * (w_pos * (cum[:, below] + cum[:, upto])).sum(axis=1)
        n_pos, n_neg = w_pos.sum(axis=1), cum[:, len(neg)]
        ok = (n_pos > 0) & (n_neg > 0)
        out[ok, j] = u[ok] / (n_pos[ok] * n_neg[ok])
    return out


def per_label_auroc(y_true, y_score, label_names: Sequence[str] | None = None) -> dict[str, float | None]:
    """AUROC of each label (sklearn ``roc_auc_score``); ``None`` for labels with a single class."""
    t, s = check_pair(y_true, y_score)
    names = check_names(label_names, t.shape[1])
    mask = scorable_labels(t)
    return {name: (float(roc_auc_score(t[:, j], s[:, j])) if mask[j] else None) for j, name in enumerate(names)}


def macro_auroc(y_true, y_score) -> tuple[float, int]:
    """Mean AUROC over the scorable labels, and how many labels that mean covers.

    Labels with only positives or only negatives have no AUROC and are left out
    (sklearn's ``average="macro"`` would raise instead); the count says how many
    remained. NaN with 0 when no label is scorable.
    """
    t, s = check_pair(y_true, y_score)
    values = [roc_auc_score(t[:, j], s[:, j]) for j in np.flatnonzero(scorable_labels(t))]
    return (float(np.mean(values)) if values else float("nan")), len(values)


def fmax(y_true, y_score, thresholds=DEFAULT_THRESHOLDS) -> tuple[float, float]:
    """Sample-centric Fmax (CAFA; used for PTB-XL by Strodthoff et al. 2021). Returns (Fmax, threshold).

    At threshold t, record i predicts the labels with score >= t. Precision is
    averaged over the records that predict at least one label, recall over the
    records that have at least one true label (CAFA's benchmark set; records
    without any true label have no recall and do not count); F(t) is their
    harmonic mean, and Fmax the largest F(t) over the thresholds (those where
    no record predicts anything have no precision and are skipped). NaN and
    NaN if no threshold gives a defined F.
    """
    t, s = check_pair(y_true, y_score)
    true_pos = t.sum(axis=1)
    has_true = true_pos > 0
    if not has_true.any():
        return float("nan"), float("nan")
    best, best_t = float("nan"), float("nan")
    for thr in np.asarray(thresholds, dtype=np.float64).ravel():
        pred = s >= thr
        n_pred = pred.sum(axis=1)
        hits = (pred & (t == 1)).sum(axis=1)
        predicting = n_pred > 0
        if not predicting.any():
            continue
        precision = np.mean(hits[predicting] / n_pred[predicting])
        recall = np.mean(hits[has_true] / true_pos[has_true])
        f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        if np.isnan(best) or f > best:
            best, best_t = float(f), float(thr)
    return best, best_t


def check_thresholds(thresholds, assessable, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-statement thresholds (k,) finite, and an assessable mask (k,) of booleans; each may be None."""
    t = None if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    if t is not None and (t.shape != (k,) or not np.isfinite(t).all()):
        raise ECGError(None, f"thresholds must be {k} finite numbers, got shape {t.shape}")
    a = None if assessable is None else np.asarray(assessable)
    if a is not None and (a.shape != (k,) or a.dtype != bool):
        raise ECGError(None, f"the assessable mask must be {k} booleans, got {a.dtype} shaped {a.shape}")
    return t, a


def calls_at(y_score, thresholds, assessable=None) -> np.ndarray:
    """(n, k) calls: score at or above the statement's threshold, never for a statement not assessable."""
    s = np.asarray(y_score, dtype=np.float64)
    t, a = check_thresholds(thresholds, assessable, s.shape[1])
    calls = s >= t[None, :]
    return calls if a is None else calls & a[None, :]


def sample_f1(y_true, calls) -> float:
    """Sample-wise F1: the mean over records of ``2 |called & true| / (|called| + |true|)``.

    A record with neither a true nor a called statement agrees perfectly and
    counts 1 (sklearn's ``f1_score(average="samples", zero_division=1)``).
    """
    t = np.asarray(y_true) == 1
    c = np.asarray(calls, dtype=bool)
    if t.shape != c.shape or t.ndim != 2 or t.shape[0] == 0:
        raise ECGError(None, f"labels shaped {t.shape} and calls shaped {c.shape} differ (need records x labels)")
    both = (t & c).sum(axis=1)
    size = t.sum(axis=1) + c.sum(axis=1)
    return float(np.where(size > 0, 2 * both / np.maximum(size, 1), 1.0).mean())


def prevalence_baseline(y_train, n: int) -> np.ndarray:
    """Scores of the naive model: every one of ``n`` records gets each label's training prevalence.

    Its macro AUROC is 0.5 by construction (one score per label ranks nothing);
    its Fmax is not trivial and is the floor a real model must clear.
    """
    t = np.asarray(y_train, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ECGError(None, f"training labels shaped {t.shape}: need (records, labels) with records > 0")
    return np.tile(t.mean(axis=0), (int(n), 1))


def check_names(label_names, k: int) -> list[str]:
    """Label names as strings, one per column (``label_<j>`` when none are given)."""
    names = [str(x) for x in label_names] if label_names is not None else [f"label_{j}" for j in range(k)]
    if len(names) != k:
        raise ECGError(None, f"{len(names)} label names for {k} label columns")
    return names
