"""The median beat of a record: aligned windows around R, outlier rejection, PR-segment baseline.

Steps:

1. R peaks (``ecg_findpeaks``) and a fixed window per beat, ``before`` s before
   and ``after`` s after R; windows that run off the record are dropped and
   counted.
2. Each beat is levelled by its isoelectric point: the flattest 20 ms in
   [-0.3, -0.04] s before R of a provisional median (``beat_isoelectric_window``).
3. Outliers: the beats, band-passed (0.5-40 Hz) for this step only so that
   wander and noise do not decide, are compared by Pearson correlation over
   the core of the beat ([-0.35 RR, +0.65 RR] around R, within the window;
   it stops 0.2 s before the next R and starts half an RR after the previous
   one, so a normal beat is not rejected for a premature neighbour). The
   dominant morphology is the cluster around the medoid beat (the one most
   correlated with the others); its median is the provisional template. A
   beat is rejected when its core or its QRS ([-80, +100] ms) correlates
   with the template below ``corr_threshold``, or when it is premature
   (RR < 80 % of the median RR) with a QRS correlation under 0.95 (an
   ectopic beat). The test is repeated once against the median of the kept
   beats.
4. Baseline wander is removed with a cubic spline through the isoelectric
   levels of the kept beats (one knot per beat), then the per-sample median of
   the kept beats is taken per lead and its isoelectric level set to zero.

Too few usable beats, a flat record or no peaks raise ``ECGError`` naming the
record; there is never a silent all-zero beat.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import interpolate

from ..errors import ECGError
from ..io.record import ECG
from ..preprocess import resample_signal
from .measure import beat_isoelectric_window
from .rpeaks import bandpass, ecg_findpeaks

FLAT_MV = 0.01
PREMATURE_FRACTION = 0.8
ECTOPIC_QRS_CORR = 0.95
QRS_WINDOW_S = (-0.08, 0.10)
COMPARE_BAND_HZ = (0.5, 40.0)
MEDOID_BEATS = 100


def _windows(x: np.ndarray, peaks: np.ndarray, nb: int, na: int) -> np.ndarray:
    """(beats, leads, nb + na) windows; every peak must have room."""
    idx = peaks[:, None] + np.arange(-nb, na)[None, :]
    return np.transpose(x[:, idx], (1, 0, 2))


def _level(beats: np.ndarray, iso: tuple[int, int]) -> np.ndarray:
    """Each beat minus its own per-lead isoelectric level."""
    return beats - np.median(beats[:, :, iso[0]:iso[1]], axis=-1, keepdims=True)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each flattened row centred and scaled to unit norm (constant rows stay 0).

    Products below use einsum rather than BLAS: these are tiny, and a threaded
    BLAS on a busy machine makes them orders of magnitude slower.
    """
    a = rows.reshape(len(rows), -1)
    a = a - a.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", a, a))
    return np.divide(a, norm[:, None], out=np.zeros_like(a), where=norm[:, None] > 0)


def _corr(rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pearson correlation of each flattened row with ``ref`` (0 for constant rows)."""
    return np.einsum("ij,j->i", _unit_rows(rows), _unit_rows(ref[None])[0])


def _classify(beats: np.ndarray, template: np.ndarray, cores: list[slice], qrs: slice, premature: np.ndarray,
              threshold: float) -> list[str | None]:
    """Per beat: None to keep, or the reason to reject it."""
    r_core = np.array([_corr(b[None, :, c], template[:, c])[0] for b, c in zip(beats, cores)])
    r_qrs = _corr(beats[:, :, qrs], template[:, qrs])
    reasons: list[str | None] = []
    for rc, rq, early in zip(r_core, r_qrs, premature):
        if early and rq < ECTOPIC_QRS_CORR:
            reasons.append(f"premature beat with a different QRS (ectopic; QRS r={rq:.2f})")
        elif rq < threshold:
            reasons.append(f"QRS shape differs from the median (r={rq:.2f} < {threshold:g})")
        elif rc < threshold:
            reasons.append(f"beat shape differs from the median (r={rc:.2f} < {threshold:g})")
        else:
            reasons.append(None)
    return reasons


def _select(beats: np.ndarray, peaks: np.ndarray, valid: list[int], nb: int, fs: float, threshold: float) -> list[str | None]:
    """Per beat in ``beats`` (the windows of ``peaks[valid]``): None to keep it, or why it is rejected."""
    rr = np.diff(peaks) / fs
    rr_med = float(np.median(rr)) if len(rr) else None
    m = beats.shape[-1]
    span = rr_med if rr_med else m / fs
    core = slice(max(0, nb - int(round(0.35 * span * fs))), min(m, nb + int(round(0.65 * span * fs))))
    qrs = slice(max(0, nb + int(round(QRS_WINDOW_S[0] * fs))), min(m, nb + int(round(QRS_WINDOW_S[1] * fs)) + 1))
    premature = np.array([i > 0 and rr_med is not None and rr[i - 1] < PREMATURE_FRACTION * rr_med for i in valid])
    # Each beat's core stops short of a close neighbour (e.g. the premature beat after it).
    cores = []
    for i in valid:
        start, stop = core.start, core.stop
        if i > 0:
            start = max(start, nb - int(round(0.5 * (peaks[i] - peaks[i - 1]))))
        if i + 1 < len(peaks):
            stop = min(stop, nb + int(peaks[i + 1] - peaks[i]) - int(round(0.2 * fs)))
        cores.append(slice(start, max(stop, qrs.stop)))
    # The dominant morphology: the medoid of (at most MEDOID_BEATS evenly spread) beats and its cluster.
    sub = beats[np.unique(np.linspace(0, len(beats) - 1, min(len(beats), MEDOID_BEATS)).astype(int))]
    unit = _unit_rows(sub[:, :, core])
    pair = np.einsum("in,jn->ij", unit, unit)
    medoid = int(np.argmax(pair.sum(axis=1)))
    template = np.median(sub[pair[medoid] >= threshold], axis=0)
    reasons = _classify(beats, template, cores, qrs, premature, threshold)
    ok = [j for j, why in enumerate(reasons) if why is None]
    if ok:  # once more against the median of the beats kept so far
        reasons = _classify(beats, np.median(beats[ok], axis=0), cores, qrs, premature, threshold)
    return reasons


def _spline_baseline(x: np.ndarray, knots: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(leads, n) baseline through per-beat isoelectric levels, constant beyond the first/last knot."""
    t = np.clip(np.arange(x.shape[-1]), knots[0], knots[-1])
    if len(knots) == 1:
        return np.repeat(levels, x.shape[-1], axis=1)
    if len(knots) < 4:
        return np.stack([np.interp(t, knots, lv) for lv in levels])
    return interpolate.CubicSpline(knots, levels, axis=1, bc_type="natural")(t)


def resample_beat(x: np.ndarray, sampling_rate: float, out_rate: float) -> np.ndarray:
    """Beats (..., m) at ``out_rate``: anti-aliased polyphase resampling, edge-padded so the window ends do not ring.

    The result has ``round(m * out_rate / sampling_rate)`` samples and sample 0
    stays at the same time, so an R peak at sample ``i`` moves to ``i * out_rate / sampling_rate``.
    """
    ratio = Fraction(float(out_rate) / float(sampling_rate)).limit_denominator(1000)
    pad = ratio.denominator * math.ceil(0.1 * sampling_rate / ratio.denominator)
    width = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    y = resample_signal(np.pad(x, width, mode="edge"), sampling_rate, out_rate)
    start = pad * ratio.numerator // ratio.denominator
    m = int(round(x.shape[-1] * float(out_rate) / float(sampling_rate)))
    return y[..., start:start + m]


def ecg_medianbeat(
    signal: np.ndarray,
    sampling_rate: float,
    *,
    before: float = 0.4,
    after: float = 0.8,
    min_beats: int = 3,
    corr_threshold: float = 0.8,
    out_rate: float | None = None,
    r_peaks: np.ndarray | None = None,
    source: str | None = None,
) -> tuple[np.ndarray, dict]:
    """Median beat (leads, m) of a (leads, n) ECG in mV, baseline at the PR isoelectric point.

    ``m = round(before * fs) + round(after * fs)`` and the R peak is sample
    ``info["r_index"]``; ``out_rate`` resamples the beat (anti-aliased).
    ``r_peaks`` skips detection. ``info``: ``beats_found``, ``beats_kept``,
    ``rejected`` (dicts with ``index`` into ``r_peaks``, ``sample``,
    ``reason``), ``r_peaks``, ``rr`` (s), ``heart_rate`` (bpm from the median
    RR), ``r_index``, ``sampling_rate`` (of the beat), ``beats`` (kept beats,
    (k, leads, m), levelled the same way), ``method`` (R-peak detector),
    ``kept`` (indices into ``r_peaks``) and ``isoelectric_ms``.
    """
    x = np.asarray(signal, dtype=np.float64)
    fs = float(sampling_rate)
    if x.ndim != 2 or x.shape[-1] == 0 or x.shape[0] == 0:
        raise ECGError(source, f"expected a non-empty (leads, samples) signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ECGError(source, "signal contains NaN or infinite values")
    if not fs > 0:
        raise ECGError(source, f"sampling rate must be positive, got {sampling_rate!r}")
    if before <= 0 or after <= 0 or min_beats < 1:
        raise ECGError(source, f"before, after and min_beats must be positive, got {before}, {after}, {min_beats}")
    x = x - np.median(x, axis=-1, keepdims=True)
    if float(np.max(np.abs(x))) < FLAT_MV:
        raise ECGError(source, f"flat record: no lead deviates more than {FLAT_MV * 1e3:g} uV from its median")
    if r_peaks is None:
        peaks, pinfo = ecg_findpeaks(x, fs, source=source)
        method = pinfo["method"]
    else:
        peaks = np.unique(np.asarray(r_peaks, dtype=np.int64))
        if len(peaks) and (peaks[0] < 0 or peaks[-1] >= x.shape[-1]):
            raise ECGError(source, f"r_peaks outside the record (0..{x.shape[-1] - 1})")
        method = "given"
    if not len(peaks):
        raise ECGError(source, "no R peaks detected")

    nb, na = int(round(before * fs)), int(round(after * fs))
    n = x.shape[-1]
    rr = np.diff(peaks) / fs
    rr_med = float(np.median(rr)) if len(rr) else None
    rejected: list[dict] = []
    valid = [i for i, p in enumerate(peaks) if p - nb >= 0 and p + na <= n]
    for i, p in enumerate(peaks):
        if p - nb < 0:
            rejected.append({"index": i, "sample": int(p), "reason": "window starts before the record"})
        elif p + na > n:
            rejected.append({"index": i, "sample": int(p), "reason": "window ends after the record"})

    kept: list[int] = []
    if valid:
        raw = _windows(x, peaks[valid], nb, na)
        iso = beat_isoelectric_window(np.median(raw - np.median(raw, axis=-1, keepdims=True), axis=0), fs, nb)
        # Beats are compared on a band-passed copy: wander and hum must not decide which beats are kept.
        beats = _level(_windows(bandpass(x, fs, *COMPARE_BAND_HZ), peaks[valid], nb, na), iso)
        reasons = _select(beats, peaks, valid, nb, fs, corr_threshold)
        for j, why in enumerate(reasons):
            if why is None:
                kept.append(valid[j])
            else:
                rejected.append({"index": valid[j], "sample": int(peaks[valid[j]]), "reason": why})
    rejected.sort(key=lambda d: d["index"])
    n_edge = sum(1 for d in rejected if d["reason"].startswith("window"))
    if len(kept) < min_beats:
        raise ECGError(source, f"only {len(kept)} usable beat(s), need {min_beats}: {len(peaks)} R peak(s) found, "
                               f"{n_edge} too close to the record edge, {len(rejected) - n_edge} rejected as outliers")

    # Baseline: spline through the isoelectric levels of the kept beats, then the median.
    knots = peaks[kept] - nb + (iso[0] + iso[1] - 1) / 2.0
    levels = np.stack([np.median(x[:, p - nb + iso[0]:p - nb + iso[1]], axis=-1) for p in peaks[kept]], axis=1)
    x = x - _spline_baseline(x, knots, levels)
    beats = _windows(x, peaks[kept], nb, na)
    median = np.median(beats, axis=0)
    iso = beat_isoelectric_window(median, fs, nb)
    median = median - np.median(median[:, iso[0]:iso[1]], axis=-1, keepdims=True)
    beats = _level(beats, iso)
    r_index, rate = nb, fs
    if out_rate is not None and float(out_rate) != fs:
        median = resample_beat(median, fs, float(out_rate))
        beats = resample_beat(beats, fs, float(out_rate))
        r_index, rate = int(round(nb * float(out_rate) / fs)), float(out_rate)
    info = {
        "beats_found": int(len(peaks)),
        "beats_kept": len(kept),
        "rejected": rejected,
        "kept": kept,
        "r_peaks": peaks,
        "rr": rr,
        "heart_rate": None if rr_med is None else 60.0 / rr_med,
        "r_index": r_index,
        "sampling_rate": rate,
        "record_sampling_rate": fs,
        "beats": beats.astype(np.float32),
        "method": method,
        "isoelectric_ms": [(iso[0] - nb) / fs * 1e3, (iso[1] - nb) / fs * 1e3],
        "source": source,
    }
    return median.astype(np.float32), info


def median_beat(ecg: ECG, **kwargs) -> tuple[np.ndarray, dict]:
    """``ecg_medianbeat`` on an ``ECG`` record (errors name its source); ``info["leads"]`` added."""
    kwargs.setdefault("source", ecg.source or None)
    median, info = ecg_medianbeat(ecg.signal, ecg.sampling_rate, **kwargs)
    info["leads"] = tuple(ecg.leads)
    return median, info
