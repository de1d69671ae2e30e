"""Calibrated probabilities, operating thresholds and the "not assessable" rule, stored with every model.

A model's raw probability ``p`` of statement ``j`` becomes
``sigmoid(a_j * logit(p) + b_j)`` (Platt scaling; ``a_j > 0``, so the map is
monotone and AUROC is unchanged), or, with ``method="isotonic"``, a monotone
piecewise-linear map of ``logit(p)`` for statements with enough validation
positives (the others keep their Platt map).

The validation fold is thin (on the local PTB-XL set 18 of 71 statements have
no positive in fold 9 and 16 more have fewer than 5), so maps are pooled: one
map is fitted on all statements together, and a statement with fewer than
``MIN_VAL_POSITIVES`` validation positives uses it. The others fit their own,
shrunk toward the pooled map by a Gaussian prior on ``(log a_j, b_j)`` whose
width is chosen by cross-validation over the validation records (held-out
log-likelihood), so that a handful of positives cannot give an extreme slope.

Thresholds are chosen per statement on the calibrated validation
probabilities: best F1 among the thresholds that call at most
``MAX_CALL_RATIO`` records per positive (default), or the highest threshold
that reaches a target sensitivity, or the lowest that reaches a target
specificity.
Statements with fewer than ``MIN_VAL_POSITIVES`` validation positives (the
pooled-map ones) take the median threshold of the others. A statement with fewer than
``MIN_TRAIN_POSITIVES`` training positives is **not assessable**: the model
saw too few examples to call it, so it is never called positive (its
probability is still reported).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

METHODS = ("platt", "isotonic")
MIN_TRAIN_POSITIVES = 10   # fewer training examples than this: not assessable (PTB-XL's PRC(S) has none)
MIN_VAL_POSITIVES = 5      # fewer validation positives: the pooled threshold instead of the statement's own
MIN_ISOTONIC_POSITIVES = 10  # isotonic maps need this many validation positives (else Platt)
# Best-F1 thresholds may call at most this many records per validation positive. Chosen on fold 9 of the
# local PTB-XL set ("all"): calls per record over true statements per record, for caps 1 / 1.5 / 2 / none:
# baseline 0.88 / 1.12 / 1.18 / 1.24, ProtoECGNet 0.88 / 1.10 / 1.18 / 1.29, FactorECG 0.88 / 1.11 / 1.26 / 1.65,
# beat black box 0.86 / 1.06 / 1.14 / 1.38.
MAX_CALL_RATIO = 1.5
PRIOR_SIGMAS = (0.1, 0.3, 1.0, 3.0, 10.0)  # widths tried for the shrinkage prior
CV_FOLDS = 5
EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class Calibration:
    """Per-statement maps, thresholds and assessability (see the module docstring); JSON via ``to_dict``."""

    labels: list[str]
    a: np.ndarray
    b: np.ndarray
    thresholds: np.ndarray
    assessable: np.ndarray
    method: str = "platt"
    isotonic: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        k = len(self.labels)
        self.a = np.asarray(self.a, dtype=np.float64).reshape(k)
        self.b = np.asarray(self.b, dtype=np.float64).reshape(k)
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64).reshape(k)
        self.assessable = np.asarray(self.assessable, dtype=bool).reshape(k)
        if self.method not in METHODS:
            raise ConfigError(None, f"calibration method must be one of {METHODS}, got {self.method!r}")
        if not (np.isfinite(self.a).all() and (self.a > 0).all() and np.isfinite(self.b).all()):
            raise ConfigError(None, "calibration slopes must be positive and finite, intercepts finite")
        if not (np.isfinite(self.thresholds).all() and ((self.thresholds >= 0) & (self.thresholds <= 1)).all()):
            raise ConfigError(None, "calibration thresholds must be probabilities in [0, 1]")
        for s, (x, y) in self.isotonic.items():
            if s not in self.labels or len(x) != len(y) or len(x) < 2 or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise ConfigError(None, f"isotonic map of {s!r} must be two increasing lists of equal length")

    def apply_logits(self, z: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, k) from raw logits (n, k)."""
        z = np.asarray(z, dtype=np.float64)
        out = sigmoid(self.a * z + self.b)
        for s, (x, y) in self.isotonic.items():
            j = self.labels.index(s)
            out[:, j] = np.interp(z[:, j], x, y)
        return out

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, k) from the model's raw probabilities (n, k)."""
        return self.apply_logits(logit(probs))

    def calls(self, calibrated: np.ndarray) -> np.ndarray:
        """(n, k) calls: at or above the threshold, and only for assessable statements."""
        return (np.asarray(calibrated) >= self.thresholds) & self.assessable

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "labels": list(self.labels),
                "a": dict(zip(self.labels, self.a.tolist())), "b": dict(zip(self.labels, self.b.tolist())),
                "thresholds": dict(zip(self.labels, self.thresholds.tolist())),
                "not_assessable": [s for s, ok in zip(self.labels, self.assessable) if not ok],
                "isotonic": {s: [list(x), list(y)] for s, (x, y) in self.isotonic.items()}, "facts": self.facts}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source=None) -> "Calibration":
        try:
            labels = [str(s) for s in d["labels"]]
            return cls(labels, [d["a"][s] for s in labels], [d["b"][s] for s in labels],
                       [d["thresholds"][s] for s in labels], [s not in set(d["not_assessable"]) for s in labels],
                       d.get("method", "platt"), {s: (list(x), list(y)) for s, (x, y) in d.get("isotonic", {}).items()},
                       dict(d.get("facts", {})))
        except ConfigError as exc:
            raise ConfigError(source, exc.problem) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(source, f"calibration section is incomplete or invalid ({exc})") from exc


def _platt_fit(z: np.ndarray, y: np.ndarray, prior: tuple[np.ndarray, np.ndarray] | None, sigma: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-column MAP (log a, b) of sigmoid(a z + b) with a Gaussian prior (None: one pooled map, no prior).

    Columns are independent, so one Newton solve per column in closed form (2x2) is enough; 50
    iterations reach machine precision on these convex problems.
    """
    if prior is None:  # pool every column into one
        z, y = z.reshape(-1, 1), y.reshape(-1, 1)
    k = z.shape[1]
    alpha, b = (np.zeros(k), np.zeros(k)) if prior is None else (prior[0].copy(), prior[1].copy())
    lam = 0.0 if prior is None else 1.0 / sigma ** 2
    for _ in range(50):
        a = np.exp(alpha)
        p = sigmoid(a * z + b)
        r = p - y                                   # d nll / d (a z + b)
        w = p * (1 - p)
        g_alpha = (r * z).sum(0) * a + (lam * (alpha - prior[0]) if prior is not None else 0.0)
        g_b = r.sum(0) + (lam * (b - prior[1]) if prior is not None else 0.0)
        h_aa = (w * z * z).sum(0) * a * a + (r * z).sum(0) * a + lam
        h_ab = (w * z).sum(0) * a
        h_bb = w.sum(0) + lam + 1e-9
        h_aa = np.maximum(h_aa, 1e-9)
        det = h_aa * h_bb - h_ab ** 2
        ok = det > 1e-12
        d_alpha = np.where(ok, (h_bb * g_alpha - h_ab * g_b) / np.where(ok, det, 1), g_alpha / h_aa)
        d_b = np.where(ok, (h_aa * g_b - h_ab * g_alpha) / np.where(ok, det, 1), g_b / h_bb)
        alpha -= np.clip(d_alpha, -2, 2)
        b -= np.clip(d_b, -5, 5)
    return alpha, b


def _log_likelihood(z, y, alpha, b) -> float:
    p = np.clip(sigmoid(np.exp(alpha) * z + b), EPS, 1 - EPS)
    return float((y * np.log(p) + (1 - y) * np.log1p(-p)).sum())


def _choose_sigma(z: np.ndarray, y: np.ndarray, pooled: tuple[float, float], seed: int
                  ) -> tuple[float, dict[str, float]]:
    """The prior width with the best held-out log-likelihood (CV over validation records)."""
    folds = np.random.default_rng(seed).permutation(len(z)) % CV_FOLDS
    prior = (np.full(z.shape[1], pooled[0]), np.full(z.shape[1], pooled[1]))
    scores = {}
    for sigma in PRIOR_SIGMAS:
        total = 0.0
        for f in range(CV_FOLDS):
            tr, te = folds != f, folds == f
            alpha, b = _platt_fit(z[tr], y[tr], prior, sigma)
            total += _log_likelihood(z[te], y[te], alpha, b)
        scores[str(sigma)] = total
    best = max(PRIOR_SIGMAS, key=lambda s: scores[str(s)])
    return best, scores


def choose_thresholds(y: np.ndarray, p: np.ndarray, rule: str = "f1", max_call_ratio: float | None = None
                      ) -> np.ndarray:
    """Per-column threshold on calibrated probabilities: ``"f1"`` (best F1), ``"sensitivity:X"`` (highest
    threshold with sensitivity >= X) or ``"specificity:X"`` (lowest with specificity >= X). Columns
    without positives get NaN (the caller decides).

    ``max_call_ratio`` (F1 only) keeps to thresholds that call at most that many times as many records
    as are positive: for a statement the model separates poorly, best F1 otherwise calls nearly every
    record (calling all scores F1 = 2p / (1 + p) at prevalence p, often more than any real cut)."""
    kind, _, target = rule.partition(":")
    if kind not in ("f1", "sensitivity", "specificity") or (kind != "f1" and not target):
        raise ConfigError(None, f"threshold rule must be 'f1', 'sensitivity:X' or 'specificity:X', got {rule!r}")
    goal = float(target) if target else None
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        pos = y[:, j] > 0
        if not pos.any():
            continue
        cuts = np.unique(p[:, j])
        called = p[:, j][None, :] >= cuts[:, None]           # (cuts, n)
        tp = (called & pos).sum(1)
        fp = (called & ~pos).sum(1)
        if kind == "f1":
            f1 = 2 * tp / np.maximum(2 * tp + fp + (pos.sum() - tp), 1)
            if max_call_ratio is not None:
                f1 = np.where(tp + fp <= max_call_ratio * pos.sum(), f1, -1.0)
            out[j] = cuts[int(np.argmax(f1))] if f1.max() >= 0 else cuts[-1]
        elif kind == "sensitivity":
            ok = tp / pos.sum() >= goal
            out[j] = cuts[ok].max() if ok.any() else cuts.min()
        else:
            neg = max(int((~pos).sum()), 1)
            ok = 1 - fp / neg >= goal
            out[j] = cuts[ok].min() if ok.any() else cuts.max()
    return out


def fit_calibration(labels: Sequence[str], y_val: np.ndarray, p_val: np.ndarray, train_positives: np.ndarray,
                    method: str = "platt", threshold_rule: str = "f1", seed: int = 0) -> Calibration:
    """A ``Calibration`` from validation labels (n, k), the model's raw validation probabilities (n, k)
    and the training positives per statement (k,) (see the module docstring)."""
    if method not in METHODS:
        raise ConfigError(None, f"calibration method must be one of {METHODS}, got {method!r}")
    y = np.asarray(y_val, dtype=np.float64)
    z = logit(p_val)
    if y.shape != z.shape or y.ndim != 2 or len(labels) != y.shape[1]:
        raise ConfigError(None, f"labels {y.shape}, probabilities {z.shape} and {len(labels)} names disagree")
    val_pos = y.sum(0)
    enough = val_pos >= MIN_VAL_POSITIVES
    pooled = tuple(float(v[0]) for v in _platt_fit(z, y, None, 1.0))
    alpha, b = np.full(y.shape[1], pooled[0]), np.full(y.shape[1], pooled[1])
    sigma, cv = None, {}
    if enough.any():
        sigma, cv = _choose_sigma(z[:, enough], y[:, enough], pooled, seed)
        prior = (alpha[enough], b[enough])
        alpha[enough], b[enough] = _platt_fit(z[:, enough], y[:, enough], prior, sigma)
    a = np.exp(alpha)
    isotonic = {}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        for j in np.flatnonzero(val_pos >= MIN_ISOTONIC_POSITIVES):
            model = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(z[:, j], y[:, j])
            isotonic[labels[j]] = (model.X_thresholds_.tolist(), model.y_thresholds_.tolist())
    cal = Calibration(list(labels), a, b, np.full(len(labels), 0.5), np.ones(len(labels), bool), method, isotonic)
    p_cal = cal.apply_logits(z)
    own = choose_thresholds(y, p_cal, threshold_rule, MAX_CALL_RATIO)
    pooled_threshold = float(np.median(own[enough])) if enough.any() else 0.5
    cal.thresholds = np.where(enough, own, pooled_threshold)
    cal.assessable = np.asarray(train_positives) >= MIN_TRAIN_POSITIVES
    cal.facts = {"n_validation": int(len(y)), "prior_sigma": sigma, "cv_log_likelihood": cv,
                 "pooled": {"a": float(np.exp(pooled[0])), "b": pooled[1]},
                 "own_map": [s for s, e in zip(labels, enough) if e],
                 "threshold_rule": threshold_rule, "max_call_ratio": MAX_CALL_RATIO,
                 "pooled_threshold": pooled_threshold,
                 "rules": {"min_train_positives": MIN_TRAIN_POSITIVES, "min_val_positives": MIN_VAL_POSITIVES,
                           "min_isotonic_positives": MIN_ISOTONIC_POSITIVES},
                 "validation_positives": dict(zip(labels, val_pos.astype(int).tolist())),
                 "training_positives": dict(zip(labels, np.asarray(train_positives).astype(int).tolist()))}
    cal.__post_init__()
    return cal
