"""Percentile bootstrap intervals for the AUROC, on resamples shared between models.

Comparing models is only fair on the same resamples, so the (B, n) index array
is drawn once, saved to a ``.npy`` file and reused by every later evaluation of
the same test set (:func:`get_or_make_bootstrap`). Rows index the test records
in the evaluator's fixed order (sorted record ids).

Redraw rule: a resample must keep every scored label scorable. The PTB-XL
benchmark (Strodthoff et al. 2021) redraws a resample until each label has a
positive; here a resample is redrawn until every label that has both classes
on the full test set has both (a positive and a negative) in the resample, so
each resample's macro AUROC averages the same labels as the point estimate. A
resample in which rare labels drop out averages fewer, typically easier,
labels, which biased the old intervals upward.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ECGError
from .classification import auroc_counts, check_pair, scorable_labels

DEFAULT_RESAMPLES = 1000
MAX_DRAWS_PER_RESAMPLE = 1000  # the redraw bound: at most this many draws per resample asked for
MIN_COMPLETE_SHARE = 0.5  # below this share of complete resamples, given indices are refused
REDRAW_RULE = ("every resample keeps both classes of every label scored on the full set: resamples that "
               "lose one are redrawn when drawn with the labels, and left out and counted otherwise")
_BLOCK_CELLS = 4_000_000  # candidate indices drawn at once while redrawing


def bootstrap_indices(n: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, y_true=None,
                      max_draws: int | None = None) -> np.ndarray:
    """``n_resamples`` rows of ``n`` record indices drawn with replacement (deterministic in ``seed``).

    With ``y_true`` (n records x k labels) each row is redrawn until it keeps
    every label that has both classes in ``y_true`` scorable (the module's
    rule). At most ``max_draws`` rows are drawn in all (default
    ``MAX_DRAWS_PER_RESAMPLE`` per resample); if fewer resamples pass by then,
    :class:`ECGError` names the labels that are hardest to keep. Rows that pass
    at the first draw equal the rows drawn without ``y_true``.
    """
    if n < 1 or n_resamples < 1:
        raise ECGError(None, f"bootstrap needs n >= 1 and n_resamples >= 1, got n={n}, n_resamples={n_resamples}")
    dtype = np.int32 if n < 2**31 else np.int64
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, size=(int(n_resamples), int(n)), dtype=dtype)
    if y_true is None:
        return first
    t = np.asarray(y_true)
    if t.ndim != 2 or t.shape[0] != n:
        raise ECGError(None, f"labels shaped {t.shape} do not cover {n} records")
    limit = int(max_draws) if max_draws is not None else MAX_DRAWS_PER_RESAMPLE * int(n_resamples)
    kept, drawn = [first[keeps_labels_scorable(first, t)]], len(first)
    have = len(kept[0])
    while have < n_resamples:
        if drawn >= limit:
            raise ECGError(None, _redraw_failure(t, have, n_resamples, drawn))
        rate = max(have / drawn, 1.0 / limit)
        rows = int(min(limit - drawn, max(1, _BLOCK_CELLS // n), np.ceil(1.2 * (n_resamples - have) / rate)))
        block = rng.integers(0, n, size=(rows, int(n)), dtype=dtype)
        kept.append(block[keeps_labels_scorable(block, t)])
        drawn, have = drawn + rows, have + len(kept[-1])
    return np.concatenate(kept)[:n_resamples]


def keeps_labels_scorable(indices, y_true) -> np.ndarray:
    """(B,) whether each resample keeps both classes of every label that has both in ``y_true``."""
    t = np.asarray(y_true) == 1
    if t.ndim == 1:
        t = t[:, None]
    idx = np.asarray(indices)
    keep = scorable_labels(t)
    if not keep.any():
        return np.ones(idx.shape[0], dtype=bool)
    positives = resample_counts(idx, t.shape[0]).astype(np.float32) @ t[:, keep].astype(np.float32)
    return ((positives > 0) & (positives < t.shape[0])).all(axis=1)


def _redraw_failure(t: np.ndarray, have: int, wanted: int, drawn: int) -> str:
    """Why the redraw stopped, naming the labels with the fewest positives (or negatives)."""
    pos = (t == 1).sum(axis=0)
    neg = t.shape[0] - pos
    rare = np.minimum(pos, neg)
    hardest = [int(j) for j in np.argsort(rare, kind="stable") if 0 < rare[j]][:5]
    return (f"only {have} of {wanted} bootstrap resamples keep every scored label scorable after {drawn} draws; "
            f"the labels hardest to keep (column: positives/negatives): "
            + ", ".join(f"{j}: {pos[j]}/{neg[j]}" for j in hardest)
            + ". Score fewer rare labels, use more records, or allow more draws")


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
                          seed: int = 0, y_true=None) -> np.ndarray:
    """Load the index array at ``path``, or draw one and save it there.

    An existing file must resample exactly ``n`` records (and hold
    ``n_resamples`` rows when that is given); otherwise :class:`ECGError`, since
    it belongs to another test set. A new file gets ``n_resamples`` (default
    1000) rows from ``seed``, redrawn by the module's rule when ``y_true`` is
    given; an existing file checked against ``y_true`` must keep every scored
    label scorable in every row (else it predates the rule or belongs to other
    labels: delete it to redraw).
    """
    from ..atomic import save_npy_atomic

    path = Path(path)
    if path.exists():
        idx = load_bootstrap(path, n)
        if n_resamples is not None and idx.shape[0] != n_resamples:
            raise ECGError(path, f"holds {idx.shape[0]} resamples, {n_resamples} were asked for")
        if y_true is not None:
            lost = int((~keeps_labels_scorable(idx, y_true)).sum())
            if lost:
                raise ECGError(path, f"{lost} of {idx.shape[0]} resamples leave a scored label with one class "
                                     "(drawn before the redraw rule or for other labels); delete the file to redraw")
        return idx
    try:
        idx = bootstrap_indices(n, DEFAULT_RESAMPLES if n_resamples is None else n_resamples, seed, y_true)
    except ECGError as exc:
        raise ECGError(path, exc.problem) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(path, idx)
    return idx


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, n) multiplicity of each record in each resample."""
    idx = np.asarray(indices, dtype=np.int64)
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


def bootstrap_macro_auroc(y_true, y_score, indices, alpha: float = 0.90) -> dict:
    """Percentile intervals (central ``alpha`` mass) of the macro AUROC and of each label's AUROC.

    The interval uses the resamples that keep every label scored on the full
    set scorable (``REDRAW_RULE``), so each resample's macro AUROC averages the
    same labels as ``point`` (the macro AUROC on the full set) and
    ``mean_n_scored`` equals that count; other resamples (indices drawn without
    the labels, or for other labels) are left out and counted
    (``n_incomplete``), which is rejection sampling from the same conditional
    distribution the redraw samples. Fewer than ``MIN_COMPLETE_SHARE`` of the
    resamples complete is an :class:`ECGError`: the indices were not drawn for
    these labels, and so few would make the interval noise. ``per_label`` holds
    ``[low, high]`` for each column, None for a label without both classes.
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
    scored = np.isfinite(per_label[0])
    point = float(per_label[0, scored].mean()) if scored.any() else float("nan")
    complete = np.isfinite(per_label[1:, scored]).all(axis=1) if scored.any() else np.zeros(len(idx), dtype=bool)
    if complete.mean() < MIN_COMPLETE_SHARE and scored.any():
        raise ECGError(None, f"only {int(complete.sum())} of {len(idx)} bootstrap resamples keep every scored label "
                             "scorable: draw the indices with these labels (bootstrap_indices or "
                             "get_or_make_bootstrap with y_true) so that such resamples are redrawn")
    used = per_label[1:][complete][:, scored]
    tail = (1.0 - alpha) / 2.0
    low, high = np.quantile(used.mean(axis=1), [tail, 1.0 - tail]) if len(used) else (np.nan, np.nan)
    bounds = np.quantile(used, [tail, 1.0 - tail], axis=0) if len(used) else None
    rank = np.cumsum(scored) - 1  # column j's place among the scored labels
    return {
        "point": point,
        "low": float(low),
        "high": float(high),
        "alpha": float(alpha),
        "mean_n_scored": float(scored.sum()) if len(used) else 0.0,
        "n_resamples": int(idx.shape[0]),
        "n_incomplete": int((~complete).sum()),
        "rule": REDRAW_RULE,
        "per_label": [[float(bounds[0, rank[j]]), float(bounds[1, rank[j]])] if scored[j] and bounds is not None
                      else None for j in range(t.shape[1])],
    }
