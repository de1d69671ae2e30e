"""The median beat of a record, or of every record of a batch at once: aligned windows around R,
outlier rejection, PR-segment baseline.

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

``align_rate`` above the record's rate (an integer multiple of it) cuts and
aligns the beats on that finer grid as if the record had been resampled to it
first (FactorECG's ``extract_rate``: R peaks to 2 ms), but QRS detection runs at
the record's own rate: the record is interpolated once (``resample_signal``),
the leads whose QRS deflections come within LEAD_CANDIDATES of the largest are
band-passed there to choose the dominant lead, and the peaks move to its
extremum on the fine grid; steps 2-4 then run on the fine grid. Detection at
the record's rate can differ from detection on the resampled record, mostly
in partial beats at the record edges (``bench/results/beats_speed.md``).

With ``subsample`` the record is never interpolated as a whole: the beats are
cut on the record's own grid and aligned to R peaks located on the
``align_rate`` grid. QRS detection and the move to the dominant lead's
extremum run at the record's rate; the extremum is then located to
1/``align_rate`` s on that lead's band-passed trace interpolated around each
peak, and each kept beat's window is interpolated to its fractional R position
(``cut_shifted``: a Lanczos kernel of SUBSAMPLE_TAPS taps). The outlier test
and the isoelectric levels use the whole-sample windows; the median beat is
then taken to ``out_rate`` (``resample_beat``).

``ecg_medianbeat_batch`` runs every step on all records of a batch at once:
beats of all records in flat arrays sorted by record, medians over each
record's beats by one sort per distinct beat count, correlations from sums,
all baselines as one spline system. Python loops run only over chunks of
records, distinct beat counts and the rare close detections, never over beats.
``ecg_medianbeat`` is the batch of one.

Too few usable beats, a flat record or no peaks give an ``ECGError`` naming
the record; there is never a silent all-zero beat.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import ECGError
from ..io.record import ECG
from ..preprocess import resample_signal
from .measure import flattest_start, isoelectric_search
from .rpeaks import (CHUNK_RECORDS, bandpass, check_batch, detect_batch, group_median, median_last, split_by_record,
                     too_short)

FLAT_MV = 0.01
PREMATURE_FRACTION = 0.8
ECTOPIC_QRS_CORR = 0.95
QRS_WINDOW_S = (-0.08, 0.10)
COMPARE_BAND_HZ = (0.5, 40.0)
MEDOID_BEATS = 100
SUBSAMPLE_TAPS = 12  # Lanczos interpolation of the beat windows and peak traces (``subsample``)
CUT_BLOCK = 32  # beats interpolated together (``cut_shifted``)


def _take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``a[rows]``, or ``a`` itself (no copy) when ``rows`` is every row in order."""
    return a if len(rows) == len(a) and (not len(rows) or rows[-1] == len(a) - 1) else a[rows]


def _cut(x: np.ndarray, rec: np.ndarray, start: np.ndarray, m: int) -> np.ndarray:
    """(beats, leads, m) windows ``x[rec, :, start:start + m]`` of the records ``x`` (n, leads, t); every window must fit."""
    return np.lib.stride_tricks.sliding_window_view(x, m, axis=-1)[rec, :, start]


def lanczos_weights(frac: np.ndarray, taps: int = SUBSAMPLE_TAPS) -> np.ndarray:
    """(..., taps) weights, summing to 1, of the samples ``floor(t) - taps/2 + 1 .. floor(t) + taps/2`` for the
    value at ``t`` with ``frac = t - floor(t)`` in [0, 1) (Lanczos kernel, a = taps / 2; frac 0 gives the sample)."""
    a = taps // 2
    d = np.asarray(frac, dtype=np.float64)[..., None] - np.arange(-a + 1, a + 1)
    w = np.sinc(d) * np.sinc(d / a)
    return w / w.sum(axis=-1, keepdims=True)


def cut_shifted(x: np.ndarray, rec: np.ndarray, start: np.ndarray, m: int, taps: int = SUBSAMPLE_TAPS) -> np.ndarray:
    """(beats, leads, m) windows of ``x`` (n, leads, t) starting at fractional samples ``start`` (beats,),
    interpolated beat by beat (``lanczos_weights``; samples beyond the record repeat its edge).

    The beats go in blocks of CUT_BLOCK whose windows stay in cache through the ``taps`` passes.
    """
    a = taps // 2
    i0 = np.floor(start).astype(np.int64)
    w = lanczos_weights(start - i0, taps).astype(np.float32)
    pad = a + 1 + int(max(0, -i0.min(initial=0), i0.max(initial=0) + m - x.shape[-1]))
    xp = np.pad(np.asarray(x, dtype=np.float32), [(0, 0), (0, 0), (pad, pad)], mode="edge")
    first = i0 - a + 1 + pad
    out = np.empty((len(rec), x.shape[1], m), dtype=np.float32)
    term = np.empty((min(CUT_BLOCK, len(rec)), x.shape[1], m), dtype=np.float32)
    for b in range(0, len(rec), CUT_BLOCK):
        win = _cut(xp, rec[b:b + CUT_BLOCK], first[b:b + CUT_BLOCK], m + taps - 1)  # (block, leads, m + taps - 1)
        o, wb, tb = out[b:b + CUT_BLOCK], w[b:b + CUT_BLOCK], term[:len(win)]
        np.multiply(win[..., :m], wb[:, 0, None, None], out=o)
        for k in range(1, taps):
            np.multiply(win[..., k:k + m], wb[:, k, None, None], out=tb)
            o += tb
    return out


def subsample_peaks(trace: np.ndarray, pos: np.ndarray, rec: np.ndarray, up: int,
                    taps: int = SUBSAMPLE_TAPS) -> np.ndarray:
    """Peaks ``pos`` (whole samples of ``trace[rec]``, (n, t)) moved to the maximum of the interpolated trace
    within one sample either side, on a grid of 1/``up`` sample: fractional samples, (peaks,)."""
    if not len(pos):
        return pos.astype(np.float64)
    a = taps // 2
    offsets = np.arange(-up, up + 1) / up                       # (s,)
    t = pos[:, None] + offsets[None, :]                          # (peaks, s)
    i0 = np.floor(t).astype(np.int64)
    frac, which = np.unique(t - i0, return_inverse=True)         # few distinct fractions
    w = lanczos_weights(frac, taps)[which.reshape(t.shape)]      # (peaks, s, taps)
    idx = np.clip(i0[..., None] + np.arange(-a + 1, a + 1), 0, trace.shape[-1] - 1)
    vals = np.einsum("pst,pst->ps", trace[rec[:, None, None], idx], w)
    return pos + offsets[np.argmax(vals, axis=1)]


def _iso_starts(beats: np.ndarray, rec: np.ndarray, n: int, sampling_rate: float, r_index: int,
                centre: bool) -> tuple[np.ndarray, int]:
    """Per record, the start of the isoelectric window of the median of its ``beats`` (B, leads, m), and its width.

    ``centre`` takes each beat's per-lead median off first (the provisional
    median of raw beats; a sort in the beats' own precision beats a partition
    on these short rows). Only the search range of the median is computed.
    """
    m = beats.shape[-1]
    lo, hi, w = isoelectric_search(m, sampling_rate, r_index)
    if hi - lo < w:
        return np.zeros(n, dtype=np.int64), min(w, m)
    region = beats[:, :, lo:hi].astype(np.float64)
    if centre:
        ordered = np.sort(beats, axis=-1)
        region -= (ordered[..., (m - 1) // 2, None].astype(np.float64) + ordered[..., m // 2, None]) / 2
    return lo + flattest_start(group_median(region, rec, n), w), w


def _window_level(beats: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Per beat (B, leads, m) and lead, the median over [start, start + width) (``starts`` per beat), (B, leads, 1)."""
    idx = (starts[:, None] + np.arange(width)[None, :])[:, None, :]
    return median_last(np.take_along_axis(beats, idx, axis=-1))[..., None]


def _level(beats: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Each beat (B, leads, m) minus its own per-lead median over [start, start + width) (``starts`` per beat)."""
    return beats - _window_level(beats, starts, width)


def _pair_corr(beats: np.ndarray, rec: np.ndarray, mask: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per distinct beat count c: (records, their (g, c, c) Pearson correlations between beats over all leads and
    the samples of ``mask`` (beats, m)), from each record's Gram matrix.

    einsum rather than BLAS: these products are small, and a threaded BLAS on
    a busy machine makes them many times slower.
    """
    a = np.where(mask[:, None, :], beats, 0.0).reshape(len(beats), -1)
    size = np.maximum(mask.sum(axis=1) * beats.shape[1], 1)
    counts = np.bincount(rec, minlength=n)
    first = np.cumsum(counts) - counts
    out = []
    for c in np.unique(counts[counts > 0]):
        rows = np.flatnonzero(counts == c)
        idx = first[rows][:, None] + np.arange(c)[None, :]
        block = a[idx]
        gram = np.einsum("gin,gjn->gij", block, block)
        total = block.sum(axis=2)
        cov = gram - total[:, :, None] * total[:, None, :] / size[idx][:, :, None]
        sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
        scale = sd[:, :, None] * sd[:, None, :]
        out.append((rows, np.divide(cov, scale, out=np.zeros_like(cov), where=scale > 0)))
    return out


def _corr(beats: np.ndarray, template: np.ndarray, rec: np.ndarray, masks: list[np.ndarray]) -> list[np.ndarray]:
    """Pearson correlation of each beat (B, leads, m) with the template of its record (``template[rec]``) over
    all leads and the samples of each mask ((B or 1, m) booleans): one array per mask, from sums over leads that
    the masks share (the template's own sums once per record)."""
    ref = template[rec]
    sums = [beats.sum(axis=1), template.sum(axis=1)[rec], np.einsum("blm,blm->bm", beats, beats),
            np.einsum("blm,blm->bm", template, template)[rec], np.einsum("blm,blm->bm", beats, ref)]
    out = []
    for mask in masks:
        w = np.broadcast_to(mask, sums[0].shape).astype(np.float64)
        n = np.maximum(w.sum(axis=1) * beats.shape[1], 1)
        sb, sr, sbb, srr, sbr = (np.einsum("bm,bm->b", x, w) for x in sums)
        var = (sbb - sb * sb / n) * (srr - sr * sr / n)
        undefined = np.where(np.isnan(var), np.nan, 0.0)  # a NaN template stays NaN; a constant beat correlates 0
        out.append(np.divide(sbr - sb * sr / n, np.sqrt(np.maximum(var, 0.0)), out=undefined, where=var > 0))
    return out


def _classify(beats, template, rec, core_mask, qrs_mask, premature, threshold) -> np.ndarray:
    """Per beat (``template[rec]`` its record's template): None to keep it, or the reason to reject it (object array)."""
    r_core, r_qrs = _corr(beats, template, rec, [core_mask, qrs_mask])
    ectopic = premature & (r_qrs < ECTOPIC_QRS_CORR)
    qrs = ~ectopic & (r_qrs < threshold)
    core = ~ectopic & ~qrs & (r_core < threshold)
    reasons = np.full(len(beats), None, dtype=object)
    for j in np.flatnonzero(ectopic | qrs | core):  # the rejected beats only
        reasons[j] = (f"premature beat with a different QRS (ectopic; QRS r={r_qrs[j]:.2f})" if ectopic[j] else
                      f"QRS shape differs from the median (r={r_qrs[j]:.2f} < {threshold:g})" if qrs[j] else
                      f"beat shape differs from the median (r={r_core[j]:.2f} < {threshold:g})")
    return reasons


def _medoid_subset(rec: np.ndarray, n: int) -> np.ndarray:
    """Which beats (sorted by record) enter the medoid search: at most MEDOID_BEATS evenly spread per record."""
    counts = np.bincount(rec, minlength=n)
    pick = np.ones(len(rec), dtype=bool)
    offsets = np.cumsum(counts) - counts
    for r in np.flatnonzero(counts > MEDOID_BEATS):  # long records only
        k = counts[r]
        pick[offsets[r]:offsets[r] + k] = False
        pick[offsets[r] + np.unique(np.linspace(0, k - 1, MEDOID_BEATS).astype(int))] = True
    return pick


def _select(beats: np.ndarray, rec: np.ndarray, index: np.ndarray, peaks: np.ndarray, counts: np.ndarray,
            premature: np.ndarray, rr_med: np.ndarray, nb: int, sampling_rate: float,
            threshold: float) -> np.ndarray:
    """Per beat of ``beats`` (B, leads, m): None to keep it, or why it is rejected (object array).

    ``rec`` and ``index`` give each beat's record and its index among that
    record's peaks; ``peaks`` are all records' peaks (flat, sorted by record,
    ``counts`` per record); ``premature`` marks beats after an RR under 80 %
    of the median; ``rr_med`` is each record's median RR in s (NaN with one peak).
    """
    fs = float(sampling_rate)
    n = len(counts)
    m = beats.shape[-1]
    span = np.where(np.isnan(rr_med), m / fs, rr_med)
    core_lo = np.maximum(0, nb - np.round(0.35 * span * fs).astype(np.int64))
    core_hi = np.minimum(m, nb + np.round(0.65 * span * fs).astype(np.int64))
    qrs = (max(0, nb + int(round(QRS_WINDOW_S[0] * fs))), min(m, nb + int(round(QRS_WINDOW_S[1] * fs)) + 1))
    t = np.arange(m)
    # Each beat's core stops short of a close neighbour (e.g. the premature beat after it).
    at = (np.cumsum(counts) - counts)[rec] + index
    has_before, has_after = index > 0, index + 1 < counts[rec]
    gap_before = np.where(has_before, peaks[at] - peaks[np.maximum(at - 1, 0)], 0)
    gap_after = np.where(has_after, peaks[np.minimum(at + 1, len(peaks) - 1)] - peaks[at], 0)
    start = np.where(has_before, np.maximum(core_lo[rec], nb - np.round(0.5 * gap_before).astype(np.int64)),
                     core_lo[rec])
    stop = np.where(has_after, np.minimum(core_hi[rec], nb + gap_after - int(round(0.2 * fs))), core_hi[rec])
    core_mask = (t >= start[:, None]) & (t < np.maximum(stop, qrs[1])[:, None])
    qrs_mask = ((t >= qrs[0]) & (t < qrs[1]))[None, :]
    # The dominant morphology: the medoid of (at most MEDOID_BEATS evenly spread) beats and its cluster.
    sub = _medoid_subset(rec, n)
    srec, sbeats = rec[sub], (beats if sub.all() else beats[sub])
    cluster = np.zeros(len(srec), dtype=bool)
    first = np.cumsum(np.bincount(srec, minlength=n)) - np.bincount(srec, minlength=n)
    for rows, pair in _pair_corr(sbeats, srec, (t >= core_lo[srec, None]) & (t < core_hi[srec, None]), n):
        medoid = np.argmax(pair.sum(axis=2), axis=1)
        cluster[first[rows][:, None] + np.arange(pair.shape[1])] = pair[np.arange(len(rows)), medoid] >= threshold
    template = group_median(sbeats[cluster], srec[cluster], n)
    reasons = _classify(beats, template, rec, core_mask, qrs_mask, premature, threshold)
    # Once more against the median of the beats kept so far, where that is another template: where the kept
    # beats are exactly the cluster, the second pass would repeat the first.
    ok = np.equal(reasons, None)
    in_cluster = np.zeros(len(beats), dtype=bool)
    in_cluster[np.flatnonzero(sub)[cluster]] = True
    differs = np.bincount(rec, weights=ok != in_cluster, minlength=n) > 0
    again = ((np.bincount(rec[ok], minlength=n) > 0) & differs)[rec]
    if again.any():
        template = group_median(beats[ok & again], rec[ok & again], n)
        reasons[again] = _classify(beats[again], template, rec[again], core_mask[again], qrs_mask, premature[again],
                                   threshold)
    return reasons


def _baseline(knots: np.ndarray, levels: np.ndarray, rec: np.ndarray, n: int, at: np.ndarray,
              at_rec: np.ndarray) -> np.ndarray:
    """Baselines (points..., leads) at sample positions ``at`` of the records ``at_rec``, through each record's knots.

    ``knots`` (K,) and ``levels`` (K, leads) are sorted by record ``rec``. A
    natural cubic spline with 4 or more knots, linear with 2 or 3, constant
    with 1; constant beyond the first/last knot. All records' spline systems
    are solved as one block-tridiagonal system, and all their pieces are
    evaluated as one piecewise polynomial on an axis where record r starts at
    r * span.
    """
    from scipy.interpolate import PPoly
    from scipy.linalg import solve_banded

    counts = np.bincount(rec, minlength=n)
    first = np.cumsum(counts) - counts
    local = np.arange(len(rec)) - first[rec]
    i = np.flatnonzero((counts[rec] >= 4) & (local > 0) & (local < counts[rec] - 1))
    h = np.diff(knots)
    ab = np.zeros((3, len(rec)))
    ab[1] = 1.0
    ab[0, i + 1] = h[i]
    ab[1, i] = 2.0 * (h[i - 1] + h[i])
    ab[2, i - 1] = h[i - 1]
    rhs = np.zeros(levels.shape)
    rhs[i] = 6.0 * ((levels[i + 1] - levels[i]) / h[i][:, None] - (levels[i] - levels[i - 1]) / h[i - 1][:, None])
    curv = solve_banded((1, 1), ab, rhs) if len(i) else rhs  # second derivatives, 0 at the ends
    # one piece per knot: to the next knot of its record, or constant after a record's last knot
    same = (rec[1:] == rec[:-1])[:, None]
    width = np.where(same, h[:, None], 1.0)
    y0, y1, m0, m1 = levels[:-1], levels[1:], curv[:-1], curv[1:]
    coef = np.zeros((4,) + levels.shape)
    coef[0, :-1] = np.where(same, (m1 - m0) / (6.0 * width), 0.0)
    coef[1, :-1] = np.where(same, m0 / 2.0, 0.0)
    coef[2, :-1] = np.where(same, (y1 - y0) / width - width * (2.0 * m0 + m1) / 6.0, 0.0)
    coef[3] = levels
    span = float(max(knots.max(initial=0.0), at.max(initial=0.0))) + 2.0
    axis = np.r_[rec * span + knots, rec[-1] * span + knots[-1] + 1.0]
    lo, hi = knots[first[at_rec]], knots[first[at_rec] + counts[at_rec] - 1]
    return PPoly(coef, axis, extrapolate=False)(at_rec * span + np.clip(at, lo, hi))


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


def resample_head(x: np.ndarray, sampling_rate: float, out_rate: float, stop: int) -> np.ndarray:
    """``resample_beat(x, sampling_rate, out_rate)[..., :stop]`` (the same values), from only as many samples of
    ``x`` as reach them: the anti-aliasing filter spans 10 samples of the slower rate either side."""
    ratio = Fraction(float(out_rate) / float(sampling_rate)).limit_denominator(1000)
    reach = math.ceil(10 * max(ratio.numerator, ratio.denominator) / ratio.numerator)
    need = math.ceil(stop * ratio.denominator / ratio.numerator) + reach + 1
    if need >= x.shape[-1]:
        return resample_beat(x, sampling_rate, out_rate)[..., :stop]
    return resample_beat(x[..., :need], sampling_rate, out_rate)[..., :stop]


def _given_peaks(r_peaks, t: int, bad: dict) -> tuple[np.ndarray, np.ndarray]:
    """Flat (pos, rec) of given R peaks per record (unique, sorted); out-of-range ones are a problem of their record."""
    pos, rec = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for k, given in enumerate(r_peaks):
        p = np.unique(np.asarray(given, dtype=np.int64))
        if len(p) and (p[0] < 0 or p[-1] >= t):
            bad.setdefault(k, f"r_peaks outside the record (0..{t - 1})")
        elif k not in bad:
            pos.append(p)
            rec.append(np.full(len(p), k, dtype=np.int64))
    return np.concatenate(pos), np.concatenate(rec)


def _chunk(x: np.ndarray, raw: np.ndarray, fs: float, align: float, names: list, errors: dict, *, before, after,
           min_beats, corr_threshold, out_rate, r_peaks, keep_beats, subsample) -> tuple[np.ndarray, list]:
    """Median beats and infos of the records ``x`` (n, leads, t) at ``fs``, float64 and finite where not in
    ``errors``; ``raw`` is the same records in their own precision; ``align`` is ``fs`` or an integer multiple."""
    n, leads, t = x.shape
    up = int(round(align / fs))
    sub = subsample and up > 1
    fine_grid = up > 1 and not sub  # the record interpolated as a whole to ``align``
    cut_rate = fs if sub else align  # the grid the beats are cut on
    nb, na = int(round(before * cut_rate)), int(round(after * cut_rate))  # samples on the beat grid
    m = nb + na
    resample = out_rate is not None and float(out_rate) != cut_rate
    m_out = int(round(m * float(out_rate) / cut_rate)) if resample else m
    medians = np.full((n, leads, m_out), np.nan, dtype=np.float32)
    infos: list = [errors.get(i) for i in range(n)]
    rows = np.array([i for i in range(n) if i not in errors], dtype=np.int64)
    if not len(rows):
        return medians, infos
    nr = len(rows)
    x, raw = _take(x, rows), _take(raw, rows)
    # (the median of float32 records sorted as float32: the same values, half the memory)
    xs = x - median_last(raw if raw.dtype == np.float32 else x, np.float64)[..., None]
    # The beat grid: the records less their median or, on a finer grid, the records as given interpolated as a
    # whole (float32, as resample_signal gives them): the baseline through the beats' levels takes any offset off.
    grid = resample_signal(raw, fs, align) if fine_grid else xs
    hp = bandpass(xs, fs, *COMPARE_BAND_HZ) if sub else None
    bad: dict[int, str] = {}  # per-record problems, numbered within ``rows``
    for k in np.flatnonzero(np.maximum(xs.max(axis=(1, 2)), -xs.min(axis=(1, 2))) < FLAT_MV):
        bad[int(k)] = f"flat record: no lead deviates more than {FLAT_MV * 1e3:g} uV from its median"
    if r_peaks is None:
        short = too_short(t, fs)
        if short:
            bad.update({k: short for k in range(nr) if k not in bad})
        live = np.array([k for k in range(nr) if k not in bad], dtype=np.int64)
        pos, rec, pinfo = (np.zeros(0, np.int64), np.zeros(0, np.int64), [])
        frac = np.zeros(0)
        if len(live) and sub:
            pos, rec, pinfo = detect_batch(_take(xs, live), fs, hp=_take(hp, live))
            lead = np.array([info["refine_lead"] for info in pinfo], dtype=np.int64)
            sign = np.array([info["polarity"] for info in pinfo], dtype=np.float64)
            frac = subsample_peaks(sign[:, None] * hp[live, lead], pos, rec, up)
        elif len(live):
            xl = _take(xs, live)
            pos, rec, pinfo = detect_batch(xl, fs, fine_rate=align, fine=_take(grid, live) if up > 1 else None,
                                           hp=bandpass(xl, fs, *COMPARE_BAND_HZ) if up > 1 else None)
        rec = live[rec]
        methods = {int(k): info["method"] for k, info in zip(live, pinfo)}
    else:
        pos, rec = _given_peaks([r_peaks[i] for i in rows], t, bad)
        keep = ~np.isin(rec, list(bad))
        pos, rec = pos[keep] * (1 if sub else up), rec[keep]
        frac = pos.astype(np.float64)
        methods = {k: "given" for k in range(nr)}
    # ``pos``: the peaks on the cutting grid; ``fine``: on the align grid (what infos report).
    if sub:
        fine, pos = np.round(frac * up).astype(np.int64), np.round(frac).astype(np.int64)
    else:
        fine = pos
    counts = np.bincount(rec, minlength=nr)
    for k in np.flatnonzero(counts == 0):
        bad.setdefault(int(k), "no R peaks detected")
    index = np.arange(len(pos)) - (np.cumsum(counts) - counts)[rec]
    later = index[1:] > 0
    rr = np.diff(fine) / align
    rr_med = group_median(rr[later], rec[1:][later], nr)
    premature = np.r_[False, later & (rr < PREMATURE_FRACTION * rr_med[rec[1:]])]
    valid = (pos - nb >= 0) & (pos + na <= grid.shape[-1])
    vrec, vindex, vstart = rec[valid], index[valid], pos[valid] - nb
    # The provisional median's isoelectric window levels the band-passed beats of the outlier test.
    iso, w = _iso_starts(_cut(grid if fine_grid else raw, vrec, vstart, m), vrec, nr, cut_rate, nb,
                         centre=True)
    band = hp if sub else bandpass(np.asarray(grid, dtype=np.float64), align, *COMPARE_BAND_HZ)
    compare = _level(_cut(band, vrec, vstart, m), iso[vrec], w)
    reasons = _select(compare, vrec, vindex, pos, counts, premature[valid], rr_med, nb, cut_rate, corr_threshold) \
        if len(vrec) else np.zeros(0, dtype=object)
    kept = np.zeros(len(pos), dtype=bool)
    kept[np.flatnonzero(valid)[np.equal(reasons, None)]] = True
    n_kept = np.bincount(rec[kept], minlength=nr)
    for k in np.flatnonzero(n_kept < min_beats):
        if int(k) not in bad:
            n_edge = int(counts[k] - np.sum(valid[rec == k]))
            bad[int(k)] = (f"only {n_kept[k]} usable beat(s), need {min_beats}: {counts[k]} R peak(s) found, "
                           f"{n_edge} too close to the record edge, {counts[k] - n_edge - n_kept[k]} rejected as outliers")
    # Baseline: spline through the isoelectric levels of the kept beats, then the median.
    good = kept & ~np.isin(rec, list(bad))
    krec, kstart = rec[good], pos[good] - nb
    median = np.zeros((nr, leads, m))
    beats = np.zeros((0, leads, m))
    if len(krec):
        levels = median_last(_cut(grid, krec, kstart + iso[krec], w))
        knots = kstart + (2 * iso[krec] + w - 1) / 2.0
        shift = frac[good] - pos[good] if sub else np.zeros(len(krec))  # sub-sample R positions
        at = kstart[:, None] + shift[:, None] + np.arange(m)[None, :]
        base = _baseline(knots, levels, krec, nr, at, np.broadcast_to(krec[:, None], at.shape))
        cut = cut_shifted(grid, krec, kstart + shift, m) if sub else _cut(grid, krec, kstart, m)
        beats = cut - base.transpose(0, 2, 1)
        median = np.nan_to_num(group_median(beats, krec, nr))
    # The median's isoelectric level, found on the align grid (with ``subsample``: the median alone interpolated).
    level_up = up if sub else 1
    lo, hi, w2 = isoelectric_search(m * level_up, cut_rate * level_up, nb * level_up)
    head = max(hi, w2)  # the isoelectric window lies in the first ``head`` samples of the align grid
    ref = resample_head(median, cut_rate, align, head) if sub else median
    if hi - lo >= w2:
        iso2 = lo + flattest_start(ref[:, :, lo:hi], w2)
    else:
        iso2, w2 = np.zeros(nr, dtype=np.int64), min(w2, m * level_up)
    median = median - _window_level(ref, iso2, w2)
    r_index, rate = nb, cut_rate
    if keep_beats:
        beats = beats - _window_level(resample_head(beats, cut_rate, align, head) if sub else beats, iso2[krec], w2)
    if resample:
        median = resample_beat(median, cut_rate, float(out_rate))
        beats = resample_beat(beats, cut_rate, float(out_rate)) if keep_beats else beats
        r_index, rate = int(round(nb * float(out_rate) / cut_rate)), float(out_rate)
    per_record = split_by_record(beats, krec, nr) if keep_beats else None
    peaks, cut_peaks = split_by_record(fine, rec, nr), split_by_record(pos, rec, nr)
    valid_of, kept_of = split_by_record(valid, rec, nr), split_by_record(kept, rec, nr)
    outliers = np.flatnonzero(np.not_equal(reasons, None))
    outliers_of = split_by_record(outliers, vrec[outliers], nr)
    iso_ms = [(iso2 - nb * level_up) / (cut_rate * level_up) * 1e3,
              (iso2 + w2 - nb * level_up) / (cut_rate * level_up) * 1e3]
    good_rows = np.array([k for k in range(nr) if k not in bad], dtype=np.int64)
    medians[rows[good_rows]] = median[good_rows]
    for k, i in enumerate(rows):
        if k in bad:
            infos[i] = ECGError(names[i], bad[k])
            continue
        p = peaks[k]
        rejected = [{"index": int(j), "sample": int(p[j]), "reason": "window starts before the record"
                     if cut_peaks[k][j] - nb < 0 else "window ends after the record"}
                    for j in np.flatnonzero(~valid_of[k])]
        rejected += [{"index": int(vindex[j]), "sample": int(p[vindex[j]]), "reason": reasons[j]}
                     for j in outliers_of[k]]
        rejected.sort(key=lambda d: d["index"])
        infos[i] = {
            "beats_found": int(len(p)),
            "beats_kept": int(n_kept[k]),
            "rejected": rejected,
            "kept": np.flatnonzero(kept_of[k]).tolist(),
            "r_peaks": p,
            "rr": np.diff(p) / align,
            "heart_rate": None if np.isnan(rr_med[k]) else 60.0 / float(rr_med[k]),
            "r_index": r_index,
            "sampling_rate": rate,
            "record_sampling_rate": align,
            "method": methods[k],
            "isoelectric_ms": [iso_ms[0][k], iso_ms[1][k]],
            "source": names[i],
        }
        if keep_beats:
            infos[i]["beats"] = per_record[k].astype(np.float32)
    return medians, infos


def ecg_medianbeat_batch(
    signals: np.ndarray,
    sampling_rate: float,
    *,
    before: float = 0.4,
    after: float = 0.8,
    min_beats: int = 3,
    corr_threshold: float = 0.8,
    align_rate: float | None = None,
    out_rate: float | None = None,
    r_peaks=None,
    sources=None,
    keep_beats: bool = False,
    subsample: bool = False,
) -> tuple[np.ndarray, list]:
    """``ecg_medianbeat`` of every record of a (records, leads, samples) batch, vectorised over records and beats.

    Returns ``(medians, infos)``: medians (records, leads, m) float32 (NaN
    rows for records without a beat) and per record its info dict, or the
    ``ECGError`` naming ``sources[i]`` that ``ecg_medianbeat`` would raise for
    it. ``align_rate`` (default: the records' rate) is the grid the beats are
    cut and aligned on, see the module docstring; one that is not an integer
    multiple of the rate has the records resampled to it first. ``r_peaks`` is
    one array of sample indices per record; ``keep_beats`` adds each record's
    kept beats to its info (``"beats"``). ``subsample`` cuts the beats on the
    records' grid, aligned to R peaks on the ``align_rate`` grid by interpolating
    each beat window only (module docstring).
    """
    if before <= 0 or after <= 0 or min_beats < 1:
        raise ECGError(None, f"before, after and min_beats must be positive, got {before}, {after}, {min_beats}")
    fs = float(sampling_rate)
    if not fs > 0:
        raise ECGError(None, f"sampling rate must be positive, got {sampling_rate!r}")
    align = fs if align_rate is None else float(align_rate)
    if not align > 0:
        raise ECGError(None, f"align_rate must be positive, got {align_rate!r}")
    raw = np.asarray(signals)
    if align != fs and not (align > fs and float(align / fs).is_integer()):
        raw, fs = resample_signal(raw, fs, align), align
    x, names, errors = check_batch(raw, fs, sources)
    if r_peaks is not None and len(r_peaks) != len(x):
        raise ECGError(None, f"{len(r_peaks)} R-peak lists for {len(x)} records")
    parts = []
    for a in range(0, len(x), CHUNK_RECORDS):
        b = a + CHUNK_RECORDS
        parts.append(_chunk(x[a:b], raw[a:b], fs, align, names[a:b],
                            {i - a: e for i, e in errors.items() if a <= i < b}, before=before, after=after,
                            min_beats=min_beats, corr_threshold=corr_threshold, out_rate=out_rate,
                            r_peaks=None if r_peaks is None else r_peaks[a:b], keep_beats=keep_beats,
                            subsample=subsample))
    return np.concatenate([p[0] for p in parts]), [info for p in parts for info in p[1]]


def ecg_medianbeat(
    signal: np.ndarray,
    sampling_rate: float,
    *,
    before: float = 0.4,
    after: float = 0.8,
    min_beats: int = 3,
    corr_threshold: float = 0.8,
    align_rate: float | None = None,
    out_rate: float | None = None,
    r_peaks: np.ndarray | None = None,
    source: str | None = None,
    subsample: bool = False,
) -> tuple[np.ndarray, dict]:
    """Median beat (leads, m) of a (leads, n) ECG in mV, baseline at the PR isoelectric point.

    ``m = round(before * fs) + round(after * fs)`` (fs: ``align_rate``, by
    default the record's rate, see ``ecg_medianbeat_batch``) and the R peak is
    sample ``info["r_index"]``; ``out_rate`` resamples the beat (anti-aliased).
    ``r_peaks`` skips detection; ``subsample`` see ``ecg_medianbeat_batch``. ``info``: ``beats_found``, ``beats_kept``,
    ``rejected`` (dicts with ``index`` into ``r_peaks``, ``sample``,
    ``reason``), ``r_peaks``, ``rr`` (s), ``heart_rate`` (bpm from the median
    RR), ``r_index``, ``sampling_rate`` (of the beat), ``beats`` (kept beats,
    (k, leads, m), levelled the same way), ``method`` (R-peak detector),
    ``kept`` (indices into ``r_peaks``) and ``isoelectric_ms``. Raises
    ``ECGError`` naming ``source``.
    """
    x = np.asarray(signal)
    if x.ndim != 2 or 0 in x.shape:
        raise ECGError(source, f"expected a non-empty (leads, samples) signal, got shape {x.shape}")
    medians, infos = ecg_medianbeat_batch(
        x[None], sampling_rate, before=before, after=after, min_beats=min_beats, corr_threshold=corr_threshold,
        align_rate=align_rate, out_rate=out_rate, r_peaks=None if r_peaks is None else [r_peaks], sources=[source],
        keep_beats=True, subsample=subsample)
    if isinstance(infos[0], ECGError):
        raise infos[0]
    return medians[0], infos[0]


def median_beat(ecg: ECG, **kwargs) -> tuple[np.ndarray, dict]:
    """``ecg_medianbeat`` on an ``ECG`` record (errors name its source); ``info["leads"]`` added."""
    kwargs.setdefault("source", ecg.source or None)
    median, info = ecg_medianbeat(ecg.signal, ecg.sampling_rate, **kwargs)
    info["leads"] = tuple(ecg.leads)
    return median, info
