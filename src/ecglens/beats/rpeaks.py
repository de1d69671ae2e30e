"""R-peak detection on all 12 leads at once, for one record or a batch of records.

The leads are combined into one QRS-energy signal: each lead is band-passed
(5-25 Hz, clipped below Nyquist), differentiated, rectified and divided by
its own 98th percentile so that no single large or noisy lead dominates;
the leads are summed and smoothed over 50 ms. neurokit2's ``neurokit``
detector (``_ecg_findpeaks_neurokit`` of neurokit2 0.3, reimplemented here
vectorised over records so that neither neurokit2 nor a per-beat loop is
needed; it gives the same peaks) finds the QRS complexes in that signal:
runs where the 100-ms smoothed absolute gradient exceeds 1.5 times its
750-ms average, runs shorter than 0.4 times the mean run dropped, the most
prominent local maximum of each run, at least 300 ms after the last one.
Detections with under 20 % of the median detection's energy (partial
complexes at the record edges) are dropped. If the answer is implausible
(too few or too many beats for 20-250 bpm, or a QRS-sized energy hump left
without a peak) a Pan-Tompkins-style fallback takes over:
``scipy.signal.find_peaks`` with a 0.25-s refractory period, a threshold at
30 % of the typical beat energy and a search-back for missed beats in long
gaps. Every detection is then moved to the local extremum (within 80 ms) of
the dominant lead: the lead whose QRS is most one-sided, in its polarity;
detections closer than the refractory period are merged into the higher one.

Peaks of a batch travel as two flat arrays, sample ``pos`` and record
``rec``, sorted by record and then sample. For beats aligned on a finer grid
than the record's (FactorECG's 500-Hz grid for 100-Hz records) only the
choice of the dominant lead and the final move run on that grid
(``detect_batch``). scipy is imported inside the functions that use it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ECGError
from ..preprocess.pipeline import sosfiltfilt_last

BAND_HZ = (5.0, 25.0)
SMOOTH_S = 0.05
REFRACTORY_S = 0.25
REFINE_S = 0.08
REFINE_BAND_HZ = (0.5, 45.0)
HR_RANGE = (20.0, 250.0)
MIN_ENERGY_FRACTION = 0.2
LEAD_CANDIDATES = 0.7   # with a fine grid: leads within this fraction of the best coarse score compete on it
NK_PAD_S = 0.5          # edge padding of the energy (neurokit's rule ignores beats in its first 0.3 s)
NK_SMOOTH_S = 0.1       # neurokit's gradient smoothing window
NK_AVG_S = 0.75         # neurokit's threshold averaging window
NK_GRAD_WEIGHT = 1.5    # QRS where the smoothed gradient exceeds this times its average
NK_MINLEN_WEIGHT = 0.4  # runs shorter than this times the mean run are no QRS
NK_MINDELAY_S = 0.3     # a peak must lie this far after the last one
CHUNK_RECORDS = 64      # records detected together: bounds the memory of the filtered copies


@lru_cache(maxsize=32)
def _bandpass_sos(low: float, high: float, sampling_rate: float) -> np.ndarray:
    from scipy import signal as sps

    return sps.butter(2, (low, min(high, 0.45 * sampling_rate)), btype="bandpass", fs=sampling_rate, output="sos")


def bandpass(x: np.ndarray, sampling_rate: float, low: float, high: float) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth band-pass along the last axis (``high`` clipped to 0.45 fs).

    Values under 1e-12 are set to 0: the filter's decaying tails over exactly
    flat stretches (zero padding, synthetic records) would otherwise become
    subnormal floats, which make later arithmetic very slow.
    """
    sos = _bandpass_sos(float(low), float(high), float(sampling_rate))
    padlen = min(3 * (2 * len(sos) + 1), x.shape[-1] - 1)
    return sosfiltfilt_last(sos, x, max(padlen, 0), zero_below=1e-12)


def ecg_energy(signal: np.ndarray, sampling_rate: float) -> np.ndarray:
    """The combined QRS-energy signal (>= 0) of a (leads, n) record, (n,), or of a (records, leads, n) batch, (records, n)."""
    from scipy import ndimage

    x = np.asarray(signal, dtype=np.float64)
    fs = float(sampling_rate)
    d = np.abs(np.gradient(bandpass(x, fs, *BAND_HZ), axis=-1))
    scale = percentile_last(d, 98.0)[..., None]
    usable = scale > 1e-6 * np.maximum(scale.max(axis=-2, keepdims=True), 1e-12)
    scaled = np.divide(d, scale, out=np.zeros_like(d), where=usable)
    energy = scaled.sum(axis=-2) / np.maximum(usable.sum(axis=-2), 1)
    return ndimage.uniform_filter1d(energy, max(1, int(round(SMOOTH_S * fs))), axis=-1, mode="nearest")


def _sorted_middle(ordered: np.ndarray, axis: int, dtype) -> np.ndarray:
    """The median along ``axis`` of values already sorted along it: the mean of the middle one or two, in ``dtype``."""
    n = ordered.shape[axis]
    low, high = np.take(ordered, (n - 1) // 2, axis=axis), np.take(ordered, n // 2, axis=axis)
    return (low.astype(dtype) + high) / 2


def median_last(x: np.ndarray, dtype=None) -> np.ndarray:
    """``np.median(x.astype(dtype), axis=-1)`` (``dtype`` default: x's own float type), the same values, from one
    sort of ``x``: numpy's vectorised sort is several times faster than the partition that ``np.median`` runs."""
    return _sorted_middle(np.sort(x, axis=-1), -1, dtype or x.dtype)


def percentile_last(x: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(x, q, axis=-1)`` (linear interpolation), the same values, from one sort."""
    n = x.shape[-1]
    ordered = np.sort(x, axis=-1)
    at = (n - 1) * (q / 100)
    i = int(np.floor(at))
    gamma = at - i
    a, b = ordered[..., i], ordered[..., min(i + 1, n - 1)]
    return a + (b - a) * gamma if gamma < 0.5 else b - (b - a) * (1 - gamma)


def group_median(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Median along axis 0 of ``values`` (P, ...) within each group, (n_groups, ...); NaN for an empty group.

    ``groups`` (P,) must be sorted. Groups of equal size are sorted together,
    one sort per distinct size, and the median is the mean of the two middle
    values, as ``np.median`` takes it.
    """
    values = np.asarray(values)
    counts = np.bincount(groups, minlength=n_groups)
    out = np.full((n_groups,) + values.shape[1:], np.nan)
    first = np.cumsum(counts) - counts
    for c in np.unique(counts[counts > 0]):
        rows = np.flatnonzero(counts == c)
        block = values[first[rows][:, None] + np.arange(c)[None, :]]  # (g, c, ...): a copy, sorted in place
        block.sort(axis=1)
        out[rows] = _sorted_middle(block, 1, np.float64)
    return out


def _first_in_group(rec: np.ndarray) -> np.ndarray:
    return np.r_[True, rec[1:] != rec[:-1]] if len(rec) else np.zeros(0, dtype=bool)


def _min_delay(pos: np.ndarray, rec: np.ndarray, delay: int) -> np.ndarray:
    """Which peaks lie more than ``delay`` after the last kept peak of their record (after sample 0 for the first).

    A peak more than ``delay`` after its predecessor is kept whatever the
    predecessor's fate; only the rare closer ones are walked in order.
    """
    first = _first_in_group(rec)
    prev = np.where(first, 0, np.r_[0, pos[:-1]])
    keep = pos - prev > delay
    for i in np.flatnonzero(~keep):  # rare: a candidate within ``delay`` of the one before it
        j = i - 1
        while j >= 0 and rec[j] == rec[i] and not keep[j]:
            j -= 1
        last = pos[j] if j >= 0 and rec[j] == rec[i] else 0
        keep[i] = pos[i] - last > delay
    return keep


def _merge_close(pos: np.ndarray, rec: np.ndarray, height: np.ndarray, distance: int) -> np.ndarray:
    """Which of the sorted unique peaks survive when any two closer than ``distance`` merge into the higher one.

    Walked in order, a peak too close to the last surviving one replaces it
    if higher and is dropped otherwise; only the rare close pairs are walked.
    """
    keep = np.ones(len(pos), dtype=bool)
    close = np.flatnonzero((np.diff(pos) < distance) & (rec[1:] == rec[:-1])) + 1
    for i in close:  # rare: two detections within the refractory period
        j = i - 1
        while not keep[j]:
            j -= 1
        if pos[i] - pos[j] < distance:
            if height[i] > height[j]:
                keep[j] = False
            else:
                keep[i] = False
    return keep


def _neurokit(energy: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """neurokit2's ``neurokit`` detector on each row of ``energy`` (n, t), edge-padded by 0.5 s: (pos, rec).

    The most prominent local maximum of every QRS run is found for all runs
    of all rows in one ``find_peaks`` call: the runs are laid end to end with
    +inf between them, which bounds both the local maxima and their
    prominences exactly as a call on each run alone would.
    """
    from scipy import ndimage
    from scipy import signal as sps

    sr = int(round(sampling_rate))
    pad = int(round(NK_PAD_S * sampling_rate))
    e = np.pad(energy, ((0, 0), (pad, pad)), mode="edge")
    n, t = e.shape
    smooth = ndimage.uniform_filter1d(np.abs(np.gradient(e, axis=-1)), max(1, int(np.rint(NK_SMOOTH_S * sr))),
                                      axis=-1, mode="nearest")
    average = ndimage.uniform_filter1d(smooth, max(1, int(np.rint(NK_AVG_S * sr))), axis=-1, mode="nearest")
    qrs = smooth > NK_GRAD_WEIGHT * average
    rise_rec, rise = np.nonzero(~qrs[:, :-1] & qrs[:, 1:])
    fall_rec, fall = np.nonzero(qrs[:, :-1] & ~qrs[:, 1:])
    # Each run starts after a rise and ends at the first fall after it (a last rise without a fall is no run).
    j = np.searchsorted(fall_rec * t + fall, rise_rec * t + rise, side="right")
    paired = j < len(fall)
    paired[paired] = fall_rec[j[paired]] == rise_rec[paired]
    rec, beg, end = rise_rec[paired], rise[paired], fall[j[paired]]
    length = end - beg
    mean_len = np.bincount(rec, weights=length, minlength=n) / np.maximum(np.bincount(rec, minlength=n), 1)
    runs = length >= mean_len[rec] * NK_MINLEN_WEIGHT
    rec, beg, length = rec[runs], beg[runs], length[runs]
    if not len(rec):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    start = np.cumsum(length + 1) - length  # each run's first index in the joined array (one +inf before it)
    run_of = np.repeat(np.arange(len(rec)), length)
    within = np.arange(len(run_of)) - np.repeat(start - start[0] - np.arange(len(rec)), length)
    joined = np.full(int(start[-1] + length[-1] + 1), np.inf)
    joined[start[run_of] + within] = e[rec[run_of], beg[run_of] + within]
    found, _ = sps.find_peaks(joined)
    found = found[np.isfinite(joined[found])]  # not the separators, whose prominence search would span everything
    prominence = sps.peak_prominences(joined, found)[0]
    run = np.searchsorted(start, found, side="right") - 1
    order = np.lexsort((-prominence, run))  # per run: the most prominent, the first of equals
    best = order[_first_in_group(run[order])]
    cand_rec, cand = rec[run[best]], beg[run[best]] + found[best] - start[run[best]]
    keep = _min_delay(cand, cand_rec, int(np.rint(sr * NK_MINDELAY_S)))
    cand, cand_rec = cand[keep] - pad, cand_rec[keep]
    inside = (cand >= 0) & (cand < energy.shape[1])
    return cand[inside].astype(np.int64), cand_rec[inside].astype(np.int64)


def _fallback(energy: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Pan-Tompkins-style on one record's energy: refractory period, threshold relative to typical beat energy, search-back."""
    from scipy import signal as sps

    fs = float(sampling_rate)
    cand, props = sps.find_peaks(energy, distance=max(1, int(REFRACTORY_S * fs)), height=0.0)
    if not len(cand):
        return cand.astype(np.int64)
    heights = props["peak_heights"]
    typical = float(np.median(heights[heights >= np.percentile(heights, 75)]))
    peaks = cand[heights >= 0.3 * typical]
    extra = []
    if len(peaks) >= 2:  # search back for beats missed in gaps over 1.66 median RR
        rr = float(np.median(np.diff(peaks)))
        for g in np.flatnonzero(np.diff(peaks) > 1.66 * rr):
            a, b = peaks[g], peaks[g + 1]
            inside = (cand > a + REFRACTORY_S * fs) & (cand < b - REFRACTORY_S * fs) & (heights >= 0.15 * typical)
            if inside.any():
                extra.append(int(cand[inside][np.argmax(heights[inside])]))
    return np.unique(np.r_[peaks, extra].astype(np.int64))


def _implausible(pos: np.ndarray, rec: np.ndarray, energy: np.ndarray, sampling_rate: float) -> list[str | None]:
    """Per record: why its detections cannot be right, or None."""
    fs = float(sampling_rate)
    n, t = energy.shape
    duration = t / fs
    counts = np.bincount(rec, minlength=n)
    typical = group_median(energy[rec, pos], rec, n)
    half = int(round(REFRACTORY_S * fs))
    edges = np.zeros((n, t + 1), dtype=np.int64)
    np.add.at(edges, (rec, np.maximum(pos - half, 0)), 1)
    np.add.at(edges, (rec, np.minimum(pos + half + 1, t)), -1)
    covered = np.cumsum(edges[:, :-1], axis=1) > 0
    covered[:, :half] = covered[:, -half:] = True  # complexes cut by the record edges may go undetected
    hump = np.any(~covered & (energy > 0.6 * typical[:, None]), axis=1)
    reasons: list[str | None] = []
    for k, h in zip(counts, hump):
        if not k:
            reasons.append("no peaks")
        elif k > duration * HR_RANGE[1] / 60.0 + 1:
            reasons.append(f"{k} peaks in {duration:.1f} s (> {HR_RANGE[1]:g} bpm)")
        elif duration >= 6.0 and k < duration * HR_RANGE[0] / 60.0 - 1:
            reasons.append(f"{k} peaks in {duration:.1f} s (< {HR_RANGE[0]:g} bpm)")
        else:
            reasons.append("a QRS-sized energy hump without a detection" if h else None)
    return reasons


def _lead_scores(hp: np.ndarray, pos: np.ndarray, rec: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Per row of ``hp`` (rows, leads, t) and lead: median QRS maximum minus median QRS depth around the peaks of ``rec``."""
    w = int(round(REFINE_S * sampling_rate))
    idx = np.clip(pos[:, None] + np.arange(-w, w + 1)[None, :], 0, hp.shape[-1] - 1)
    seg = hp[rec[:, None], :, idx]  # (peaks, window, leads)
    score = group_median(seg.max(axis=1), rec, len(hp)) - group_median(-seg.min(axis=1), rec, len(hp))
    return np.nan_to_num(score)  # records without peaks


def _dominant_lead(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per record (lead, +1/-1): the lead whose QRS deflections are largest and most one-sided, and their sign."""
    lead = np.argmax(np.abs(scores), axis=1)
    return lead, np.where(scores[np.arange(len(scores)), lead] >= 0, 1, -1)


def _fine_lead(scores: np.ndarray, fine: np.ndarray, pos: np.ndarray, rec: np.ndarray,
               rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lead, sign, band-passed dominant lead (n, t_fine)) chosen on the fine grid among the leads whose
    coarse score (``scores``, (n, leads)) is within LEAD_CANDIDATES of the best; ``pos`` are fine-grid samples."""
    size = np.abs(scores)
    has = np.bincount(rec, minlength=len(scores)) > 0
    cand_rec, cand_lead = np.nonzero((size >= LEAD_CANDIDATES * size.max(axis=1, keepdims=True)) & has[:, None])
    hp = bandpass(fine[cand_rec, cand_lead], rate, *REFINE_BAND_HZ)
    # every peak of a record, once per candidate lead of that record
    counts = np.bincount(rec, minlength=len(scores))
    per = counts[cand_rec]
    pair = np.repeat(np.arange(len(cand_rec)), per)
    peak = np.repeat(np.cumsum(counts)[cand_rec] - per, per) + np.arange(len(pair)) - np.repeat(np.cumsum(per) - per, per)
    fine_scores = _lead_scores(hp[:, None, :], pos[peak], pair, rate)[:, 0]
    order = np.lexsort((cand_lead, -np.abs(fine_scores), cand_rec))
    best = order[_first_in_group(cand_rec[order])]
    lead = np.zeros(len(scores), dtype=np.int64)
    sign = np.ones(len(scores), dtype=np.int64)
    trace = np.zeros((len(scores), fine.shape[-1]))
    chosen = cand_rec[best]
    lead[chosen] = cand_lead[best]
    sign[chosen] = np.where(fine_scores[best] >= 0, 1, -1)
    trace[chosen] = sign[chosen, None] * hp[best]
    return lead, sign, trace


def _refine(trace: np.ndarray, pos: np.ndarray, rec: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Peaks moved to the maximum of ``trace[rec]`` (n, t) within 80 ms, then merged within the refractory period."""
    t = trace.shape[-1]
    w = int(round(REFINE_S * sampling_rate))
    idx = pos[:, None] + np.arange(-w, w + 1)[None, :]
    vals = np.where((idx >= 0) & (idx < t), trace[rec[:, None], np.clip(idx, 0, t - 1)], -np.inf)
    moved = idx[np.arange(len(idx)), np.argmax(vals, axis=1)] if len(idx) else pos
    order = np.lexsort((moved, rec))
    moved, rec = moved[order], rec[order]
    unique = np.r_[True, (np.diff(moved) != 0) | (rec[1:] != rec[:-1])] if len(moved) else np.zeros(0, bool)
    moved, rec = moved[unique], rec[unique]
    keep = _merge_close(moved, rec, trace[rec, moved], int(REFRACTORY_S * sampling_rate))
    return moved[keep].astype(np.int64), rec[keep].astype(np.int64)


def detect_batch(x: np.ndarray, sampling_rate: float, *, fine: np.ndarray | None = None, fine_rate: float | None = None,
                 hp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """R peaks (pos, rec) of finite (n, leads, t) records, and per record how they were found.

    With ``fine`` (the same records interpolated to ``fine_rate``, a multiple
    of the rate) the QRS detection runs on ``x`` and ``hp`` (band-passed ``x``)
    scores the leads, the leads within LEAD_CANDIDATES of the best are scored
    again on the fine grid, and the move to the dominant lead's extremum runs
    there: the peaks come on the fine grid without filtering every lead at the
    fine rate. Records without any peak simply have none.
    """
    fs = float(sampling_rate)
    n = len(x)
    energy = ecg_energy(x, fs)
    pos, rec = _neurokit(energy, fs)
    if len(pos):  # e.g. a partial QRS or P wave at the record edge
        strong = energy[rec, pos] >= MIN_ENERGY_FRACTION * group_median(energy[rec, pos], rec, n)[rec]
        pos, rec = pos[strong], rec[strong]
    reasons = _implausible(pos, rec, energy, fs)
    bad = [i for i, why in enumerate(reasons) if why is not None]
    if bad:  # rare: the fallback detector, record by record
        extra = [_fallback(energy[i], fs) for i in bad]
        keep = ~np.isin(rec, bad)
        pos = np.concatenate([pos[keep]] + extra)
        rec = np.concatenate([rec[keep]] + [np.full(len(p), i) for i, p in zip(bad, extra)]).astype(np.int64)
        order = np.lexsort((pos, rec))
        pos, rec = pos[order].astype(np.int64), rec[order]
    hp = bandpass(x, fs, *REFINE_BAND_HZ) if hp is None else hp
    scores = _lead_scores(hp, pos, rec, fs)
    rate = fs
    if fine is None:
        lead, sign = _dominant_lead(scores)
        trace = sign[:, None] * hp[np.arange(n), lead]
    else:
        rate = float(fine_rate)
        pos = np.round(pos * (rate / fs)).astype(np.int64)
        lead, sign, trace = _fine_lead(scores, fine, pos, rec, rate)
    pos, rec = _refine(trace, pos, rec, rate)
    counts = np.bincount(rec, minlength=n)
    infos = [{"method": "neurokit" if why is None else "fallback", "fallback_reason": why, "refine_lead": int(lead[i]),
              "polarity": int(sign[i]), "sampling_rate": rate, "n_peaks": int(counts[i])}
             for i, why in enumerate(reasons)]
    return pos, rec, infos


def split_by_record(values: np.ndarray, rec: np.ndarray, n: int) -> list[np.ndarray]:
    """Flat per-peak ``values`` (sorted by record) as one array (a view) per record."""
    ends = np.cumsum(np.bincount(rec, minlength=n)).tolist()
    return [values[a:b] for a, b in zip([0] + ends[:-1], ends)]


def check_batch(signals, sampling_rate: float, sources=None) -> tuple[np.ndarray, list, dict[int, ECGError]]:
    """(float64 (n, leads, t) batch, per-record sources, per-record errors for non-finite records).

    Raises ``ECGError`` for a batch that is not (records, leads, samples), a bad rate or a wrong number of sources.
    """
    x = np.asarray(signals, dtype=np.float64)
    if x.ndim != 3 or 0 in x.shape:
        raise ECGError(None, f"expected a non-empty (records, leads, samples) batch, got shape {x.shape}")
    if not float(sampling_rate) > 0:
        raise ECGError(None, f"sampling rate must be positive, got {sampling_rate!r}")
    names = [None] * len(x) if sources is None else list(sources)
    if len(names) != len(x):
        raise ECGError(None, f"{len(names)} sources for {len(x)} records")
    errors = {int(i): ECGError(names[i], "signal contains NaN or infinite values")
              for i in np.flatnonzero(~np.isfinite(x).all(axis=(1, 2)))}
    return x, names, errors


def too_short(n_samples: int, sampling_rate: float) -> str | None:
    """Why a record of ``n_samples`` is too short for R-peak detection (under 0.5 s), or None."""
    fs = float(sampling_rate)
    return f"record too short for R-peak detection ({n_samples / fs:.2f} s)" if n_samples < int(0.5 * fs) else None


def ecg_findpeaks_batch(signals: np.ndarray, sampling_rate: float, *, sources=None) -> list[tuple[np.ndarray, dict] | ECGError]:
    """``ecg_findpeaks`` of every record of a (records, leads, samples) batch, vectorised over records.

    Returns one entry per record: ``(peaks, info)`` or the ``ECGError`` (naming
    ``sources[i]``) that ``ecg_findpeaks`` would raise for it.
    """
    x, names, errors = check_batch(signals, sampling_rate, sources)
    short = too_short(x.shape[-1], sampling_rate)
    if short:
        errors = {i: errors.get(i, ECGError(names[i], short)) for i in range(len(x))}
    out: list = [errors.get(i) for i in range(len(x))]
    rows = np.array([i for i in range(len(x)) if i not in errors], dtype=np.int64)
    for chunk in np.split(rows, np.arange(CHUNK_RECORDS, len(rows), CHUNK_RECORDS)):
        if not len(chunk):
            continue
        pos, rec, infos = detect_batch(x[chunk], sampling_rate)
        for i, peaks, info in zip(chunk, split_by_record(pos, rec, len(chunk)), infos):
            out[i] = (peaks, info) if len(peaks) else ECGError(names[i], "no R peaks detected")
    return out


def ecg_findpeaks(signal: np.ndarray, sampling_rate: float, *, source: str | None = None) -> tuple[np.ndarray, dict]:
    """R-peak sample indices of a (leads, n) ECG, and how they were found.

    ``info``: ``method`` (``"neurokit"`` or ``"fallback"``), ``fallback_reason``
    (why the neurokit rule's answer was not used, or None), ``refine_lead``
    (index of the dominant lead) and ``polarity`` (+1/-1). Raises ``ECGError``
    naming ``source`` for a record that is not 2-D, not finite or has no
    detectable beats.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ECGError(source, f"expected a (leads, samples) signal, got shape {x.shape}")
    result = ecg_findpeaks_batch(x[None], sampling_rate, sources=[source])[0]
    if isinstance(result, ECGError):
        raise result
    return result
