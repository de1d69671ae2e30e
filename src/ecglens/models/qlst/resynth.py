"""Re-synthesis: a 10-s record built from one median beat, for classifiers that read whole records.

qLST moves a median beat; a record classifier needs a record. ``resynthesize``
places copies of the beat at the patient's own R-peak times (the beat's R
sample, ``r_index``, lands exactly on each peak) on a zero baseline (the
original record's wander and noise are not carried over). Neighbouring copies
overlap (a 1.2-s beat window is longer than most RR intervals), so each sample
belongs to one beat, the *nearest in the cardiac cycle*: the hand-over from
beat k to beat k+1 happens at ``r_k + boundary * RR_k`` (default 0.6 RR, after
the T wave and before the next P wave at ordinary rates), with a linear
cross-fade ``crossfade`` samples wide so no step is introduced. Where only one
beat's window covers a sample it alone is used; samples no window covers stay
at zero. One virtual beat is added one median RR before the first and after
the last peak, so the record's edges show the T wave of the preceding beat and
the P wave of the next as the real record does.

The weights depend only on the peaks; the record is a weighted sum of beat
samples, hence differentiable in the beat.

``RecordContext`` carries a batch's R peaks and record length to a record
classifier (``adapters.RecordClassifierAdapter``, which also holds
``resynthesis_fidelity``: how far such a classifier's scores on re-synthesised
records can be trusted). This module imports no adapter.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ECGError

DEFAULT_BOUNDARY = 0.6


@dataclass
class RecordContext:
    """Where a record classifier's beats go: R peaks (B, P) long, padded with -1, and the record length."""

    r_peaks: torch.Tensor
    n_samples: int

    def __post_init__(self):
        self.r_peaks = torch.as_tensor(self.r_peaks, dtype=torch.long)
        if self.r_peaks.ndim == 1:
            self.r_peaks = self.r_peaks[None]
        if self.r_peaks.ndim != 2 or int(self.n_samples) < 1:
            raise ECGError(None, f"RecordContext needs (B, P) r_peaks and n_samples >= 1, got "
                                 f"{tuple(self.r_peaks.shape)} and {self.n_samples}")


def _peak_rows(r_peaks, batch: int) -> list[np.ndarray]:
    """r_peaks as one sorted int array per batch row (1-D: shared; 2-D: per row, padded with -1)."""
    arr = r_peaks.detach().cpu().numpy() if isinstance(r_peaks, torch.Tensor) else np.asarray(r_peaks)
    if arr.ndim == 1:
        rows = [arr] * batch
    elif arr.ndim == 2 and len(arr) == batch:
        rows = list(arr)
    else:
        raise ECGError(None, f"r_peaks must be 1-D or (batch={batch}, peaks), got shape {arr.shape}")
    out = []
    for i, row in enumerate(rows):
        row = np.asarray(row, dtype=np.int64)
        row = np.unique(row[row >= 0])
        if not len(row):
            raise ECGError(None, f"row {i}: no R peaks to place the beat at")
        out.append(row)
    return out


def resynthesis_weights(peaks: np.ndarray, n_samples: int, beat_samples: int, r_index: int,
                        boundary: float = DEFAULT_BOUNDARY, crossfade: int | None = None,
                        extend: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per placed beat: weight (P, n) of each record sample and the beat sample (P, n) it reads.

    ``peaks`` are sorted R samples; the weights of the beats covering a sample
    sum to 1 (0 where none does). See the module docstring for the rule.
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    if extend and len(peaks) >= 2:
        rr = int(round(float(np.median(np.diff(peaks)))))
        peaks = np.concatenate([[peaks[0] - rr], peaks, [peaks[-1] + rr]])
    h = float(crossfade if crossfade is not None else max(1, round(0.05 * beat_samples)))
    t = np.arange(int(n_samples), dtype=np.float64)[None, :]
    p = peaks.astype(np.float64)[:, None]
    j = (t - p + r_index).astype(np.int64)
    cover = (j >= 0) & (j < beat_samples)
    bounds = p[:-1] + boundary * (p[1:] - p[:-1])
    prev_bound = np.vstack([np.full((1, 1), -np.inf), bounds])
    next_bound = np.vstack([bounds, np.full((1, 1), np.inf)])
    rise = (t - prev_bound) / h + 0.5
    fall = (next_bound - t) / h + 0.5
    w = np.clip(np.minimum(rise, fall), 0.0, 1.0) * cover
    total = w.sum(axis=0, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    return w, np.clip(j, 0, beat_samples - 1)


def resynthesize(beat: torch.Tensor, r_peaks, n_samples: int, r_index: int, *,
                 boundary: float = DEFAULT_BOUNDARY, crossfade: int | None = None, extend: bool = True) -> torch.Tensor:
    """A record (..., leads, n_samples) from a beat (leads, T) or beats (B, leads, T), differentiable in the beat.

    ``r_peaks``: R-peak samples of the record, 1-D (shared by the batch) or
    (B, P) padded with -1; ``r_index``: the R sample within the beat;
    ``boundary``/``crossfade``/``extend``: the overlap rule (module docstring).
    """
    squeeze = beat.ndim == 2
    x = beat.unsqueeze(0) if squeeze else beat
    if x.ndim != 3:
        raise ECGError(None, f"beat must be (leads, T) or (batch, leads, T), got shape {tuple(beat.shape)}")
    b, leads, m = x.shape
    if not 0 <= int(r_index) < m or int(n_samples) < 1:
        raise ECGError(None, f"r_index {r_index} outside the beat of {m} samples, or n_samples {n_samples} < 1")
    rows = [resynthesis_weights(p, int(n_samples), m, int(r_index), boundary, crossfade, extend)
            for p in _peak_rows(r_peaks, b)]
    width = max(len(w) for w, _ in rows)
    weights = np.zeros((b, width, int(n_samples)), dtype=np.float32)
    index = np.zeros((b, width, int(n_samples)), dtype=np.int64)
    for i, (w, j) in enumerate(rows):
        weights[i, :len(w)], index[i, :len(j)] = w, j
    weights_t = torch.from_numpy(weights).to(device=x.device, dtype=x.dtype)
    index_t = torch.from_numpy(index).to(x.device)
    gathered = torch.gather(x.unsqueeze(1).expand(b, width, leads, m), 3,
                            index_t.unsqueeze(2).expand(b, width, leads, int(n_samples)))
    out = (gathered * weights_t.unsqueeze(2)).sum(dim=1)
    return out[0] if squeeze else out


def regular_peaks(rr_s: Sequence[float] | np.ndarray, n_samples: int, sampling_rate: float,
                  first_fraction: float = 0.6) -> torch.Tensor:
    """(B, P) R peaks (padded with -1) of regular rhythms with the given RR intervals (s).

    The first R lies ``first_fraction`` RR after the start (as in ``ecg_simulate``);
    used when a record's own peaks are not at hand (e.g. training on median beats).
    """
    rr = np.atleast_1d(np.asarray(rr_s, dtype=np.float64))
    if not np.all(np.isfinite(rr)) or np.any(rr <= 0):
        raise ECGError(None, "RR intervals must be positive and finite")
    rows = [np.arange(first_fraction * r * sampling_rate, n_samples, r * sampling_rate).round().astype(np.int64)
            for r in rr]
    rows = [r[r < n_samples] for r in rows]
    out = np.full((len(rows), max(1, max(len(r) for r in rows))), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)
