"""Percentile bootstrap intervals for the macro AUROC, on resamples shared between models.

Comparing models is only fair on the same resamples, so the (B, n) index array
is drawn once, saved to a ``.npy`` file and reused by every later evaluation of
the same test set (:func:`get_or_make_bootstrap`). Rows index the test records
in the evaluator's fixed order (sorted record ids).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ECGError
from .classification import auroc_counts, check_pair

DEFAULT_RESAMPLES = 1000


def bootstrap_indices(n: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``n_resamples`` rows of ``n`` record indices drawn with replacement (deterministic in ``seed``)."""
    if n < 1 or n_resamples < 1:
        raise ECGError(None, f"bootstrap needs n >= 1 and n_resamples >= 1, got n={n}, n_resamples={n_resamples}")
    dtype = np.int32 if n < 2**31 else np.int64
    return np.random.default_rng(seed).integers(0, n, size=(int(n_resamples), int(n)), dtype=dtype)


def load_bootstrap(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Read a saved index array, checking its shape, type and range (and ``n`` when given)."""
    path = Path(path)
    try:
        idx = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ECGError(path, f"cannot read bootstrap indices: {exc}") from exc
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer) or idx.size == 0:
        raise ECGError(path, f"bootstrap indices must be a non-empty 2-D integer array, got {idx.dtype} {idx.shape}")
    if n is not None and idx.shape[1] != n:
        raise ECGError(path, f"bootstrap indices resample {idx.shape[1]} records, this test set has {n}")
    if idx.min() < 0 or idx.max() >= idx.shape[1]:
        raise ECGError(path, f"bootstrap indices outside [0, {idx.shape[1]})")
    return idx


def get_or_make_bootstrap(path: str | os.PathLike, n: int, n_resamples: int | None = None,
                          seed: int = 0) -> np.ndarray:
    """Load the index array at ``path``, or draw one and save it there.

    An existing file must resample exactly ``n`` records (and hold
    ``n_resamples`` rows when that is given); otherwise :class:`ECGError`, since
    it belongs to another test set. A new file gets ``n_resamples`` (default
    1000) rows from ``seed``.
    """
    path = Path(path)
    if path.exists():
        idx = load_bootstrap(path, n)
        if n_resamples is not None and idx.shape[0] != n_resamples:
            raise ECGError(path, f"holds {idx.shape[0]} resamples, {n_resamples} were asked for")
        return idx
    idx = bootstrap_indices(n, DEFAULT_RESAMPLES if n_resamples is None else n_resamples, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, idx)
    os.replace(tmp, path)
    return idx


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, n) multiplicity of each record in each resample."""
    idx = np.asarray(indices, dtype=np.int64)
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


def bootstrap_macro_auroc(y_true, y_score, indices, alpha: float = 0.90) -> dict:
    """Percentile interval (central ``alpha`` mass) of the macro AUROC over bootstrap resamples.

    In each resample the macro AUROC is taken over the labels that still have
    both classes there; ``mean_n_scored`` says how many that was on average.
    Resamples where no label has both classes have no value: they are left out
    and counted (``n_unscorable``). ``point`` is the macro AUROC on the full set.
    """
    t, s = check_pair(y_true, y_score)
    if not 0 < alpha < 1:
        raise ECGError(None, f"alpha must lie in (0, 1), got {alpha}")
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] != t.shape[0]:
        raise ECGError(None, f"bootstrap indices shaped {idx.shape} do not resample {t.shape[0]} records")
    # Row 0: every record once (the point estimate); rows 1..B: the resamples.
    counts = np.vstack([np.ones((1, t.shape[0]), dtype=np.int64), resample_counts(idx, t.shape[0])])
    per_label = auroc_counts(t, s, counts)
    n_scored = np.isfinite(per_label).sum(axis=1)
    point = float(np.nanmean(per_label[0])) if n_scored[0] else float("nan")
    n_scored, per_label = n_scored[1:], per_label[1:]
    ok = n_scored > 0
    macro = np.nansum(per_label[ok], axis=1) / n_scored[ok]
    tail = (1.0 - alpha) / 2.0
    low, high = (np.quantile(macro, [tail, 1.0 - tail]) if macro.size else (np.nan, np.nan))
    return {
        "point": point,
        "low": float(low),
        "high": float(high),
        "alpha": float(alpha),
        "mean_n_scored": float(n_scored[ok].mean()) if ok.any() else 0.0,
        "n_resamples": int(idx.shape[0]),
        "n_unscorable": int((~ok).sum()),
    }
