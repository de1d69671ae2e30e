"""R-peak detection on all 12 leads at once.

The leads are combined into one QRS-energy signal: each lead is band-passed
(5-25 Hz, clipped below Nyquist), differentiated, rectified and divided by
its own 98th percentile so that no single large or noisy lead dominates;
the leads are summed and smoothed over 50 ms. neurokit2's ``neurokit``
detector finds the QRS complexes in that signal; detections with under 20 %
of the median detection's energy (partial complexes at the record edges)
are dropped. If neurokit2 fails or its answer is implausible (too few or
too many beats for 20-250 bpm, or a QRS-sized energy hump left without a
peak) a Pan-Tompkins-style fallback takes over: ``scipy.signal.find_peaks``
with a 0.25-s refractory period, a threshold at 30 % of the typical beat
energy and a search-back for missed beats in long gaps. Every detection is
then moved to the local extremum (within 80 ms) of the dominant lead: the
lead whose QRS is most one-sided, in its polarity.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from ..errors import ECGError

BAND_HZ = (5.0, 25.0)
SMOOTH_S = 0.05
REFRACTORY_S = 0.25
REFINE_S = 0.08
HR_RANGE = (20.0, 250.0)
MIN_ENERGY_FRACTION = 0.2


@lru_cache(maxsize=32)
def _bandpass_sos(low: float, high: float, sampling_rate: float) -> np.ndarray:
    return sps.butter(2, (low, min(high, 0.45 * sampling_rate)), btype="bandpass", fs=sampling_rate, output="sos")


def bandpass(x: np.ndarray, sampling_rate: float, low: float, high: float) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth band-pass along the last axis (``high`` clipped to 0.45 fs).

    Values under 1e-12 are set to 0: the filter's decaying tails over exactly
    flat stretches (zero padding, synthetic records) would otherwise become
    subnormal floats, which make later arithmetic very slow.
    """
    sos = _bandpass_sos(float(low), float(high), float(sampling_rate))
    padlen = min(3 * (2 * len(sos) + 1), x.shape[-1] - 1)
    y = sps.sosfiltfilt(sos, x, axis=-1, padlen=max(padlen, 0))
    y[np.abs(y) < 1e-12] = 0.0
    return y


def ecg_energy(signal: np.ndarray, sampling_rate: float) -> np.ndarray:
    """The combined QRS-energy signal of all leads (1-D, >= 0), see the module docstring."""
    x = np.asarray(signal, dtype=np.float64)
    fs = float(sampling_rate)
    d = np.abs(np.gradient(bandpass(x, fs, *BAND_HZ), axis=-1))
    scale = np.percentile(d, 98, axis=-1, keepdims=True)
    usable = scale[:, 0] > 1e-6 * max(float(scale.max()), 1e-12)
    energy = (d[usable] / scale[usable]).sum(axis=0) / max(int(usable.sum()), 1)
    return ndimage.uniform_filter1d(energy, max(1, int(round(SMOOTH_S * fs))), mode="nearest")


def _neurokit(energy: np.ndarray, sampling_rate: float) -> np.ndarray:
    """neurokit2's detector on the energy signal, edge-padded (it ignores beats in its first 0.3 s)."""
    import neurokit2 as nk

    pad = int(round(0.5 * sampling_rate))
    padded = np.pad(energy, pad, mode="edge")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = nk.ecg_findpeaks(padded, sampling_rate=int(round(sampling_rate)), method="neurokit")["ECG_R_Peaks"]
    peaks = np.asarray(found, dtype=np.int64) - pad
    return np.unique(peaks[(peaks >= 0) & (peaks < len(energy))])


def _fallback(energy: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Pan-Tompkins-style: refractory period, threshold relative to typical beat energy, search-back."""
    fs = float(sampling_rate)
    cand, props = sps.find_peaks(energy, distance=max(1, int(REFRACTORY_S * fs)), height=0.0)
    if not len(cand):
        return cand.astype(np.int64)
    heights = props["peak_heights"]
    typical = float(np.median(heights[heights >= np.percentile(heights, 75)]))
    keep = heights >= 0.3 * typical
    peaks = list(cand[keep])
    if len(peaks) >= 2:  # search back for beats missed in gaps over 1.66 median RR
        rr = float(np.median(np.diff(peaks)))
        for a, b in zip(list(peaks[:-1]), list(peaks[1:])):
            if b - a > 1.66 * rr:
                inside = (cand > a + REFRACTORY_S * fs) & (cand < b - REFRACTORY_S * fs) & (heights >= 0.15 * typical)
                if inside.any():
                    peaks.append(int(cand[inside][np.argmax(heights[inside])]))
    return np.unique(np.asarray(peaks, dtype=np.int64))


def _implausible(peaks: np.ndarray, energy: np.ndarray, sampling_rate: float) -> str | None:
    """Why a set of detections cannot be right, or None."""
    fs = float(sampling_rate)
    duration = len(energy) / fs
    if not len(peaks):
        return "no peaks"
    if len(peaks) > duration * HR_RANGE[1] / 60.0 + 1:
        return f"{len(peaks)} peaks in {duration:.1f} s (> {HR_RANGE[1]:g} bpm)"
    if duration >= 6.0 and len(peaks) < duration * HR_RANGE[0] / 60.0 - 1:
        return f"{len(peaks)} peaks in {duration:.1f} s (< {HR_RANGE[0]:g} bpm)"
    typical = float(np.median(energy[peaks]))
    covered = np.zeros(len(energy), dtype=bool)
    half = int(round(REFRACTORY_S * fs))
    for p in peaks:
        covered[max(0, p - half):p + half + 1] = True
    covered[:half] = covered[-half:] = True  # complexes cut by the record edges may go undetected
    if np.any(energy[~covered] > 0.6 * typical):
        return "a QRS-sized energy hump without a detection"
    return None


def _dominant_lead(x: np.ndarray, peaks: np.ndarray, sampling_rate: float) -> tuple[int, int]:
    """(lead, +1/-1): the lead whose QRS deflections are largest and most one-sided, and their sign."""
    w = int(round(REFINE_S * sampling_rate))
    idx = np.clip(peaks[:, None] + np.arange(-w, w + 1)[None, :], 0, x.shape[-1] - 1)
    seg = x[:, idx]  # (leads, beats, window)
    top = np.median(seg.max(axis=-1), axis=-1)
    bottom = np.median(-seg.min(axis=-1), axis=-1)
    score = top - bottom
    lead = int(np.argmax(np.abs(score)))
    return lead, (1 if score[lead] >= 0 else -1)


def _merge_close(peaks: np.ndarray, trace: np.ndarray, distance: int) -> np.ndarray:
    """Sorted unique peaks with any two closer than ``distance`` merged into the higher one."""
    out: list[int] = []
    for p in np.unique(peaks):
        if out and p - out[-1] < distance:
            if trace[p] > trace[out[-1]]:
                out[-1] = int(p)
        else:
            out.append(int(p))
    return np.asarray(out, dtype=np.int64)


def ecg_findpeaks(signal: np.ndarray, sampling_rate: float, *, source: str | None = None) -> tuple[np.ndarray, dict]:
    """R-peak sample indices of a (leads, n) ECG, and how they were found.

    ``info``: ``method`` (``"neurokit2"`` or ``"fallback"``), ``fallback_reason``
    (why neurokit2's answer was not used, or None), ``refine_lead`` (index of
    the dominant lead) and ``polarity`` (+1/-1). Raises ``ECGError`` naming
    ``source`` for a record that is not 2-D, not finite or has no detectable
    beats.
    """
    x = np.asarray(signal, dtype=np.float64)
    fs = float(sampling_rate)
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ECGError(source, f"expected a (leads, samples) signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ECGError(source, "signal contains NaN or infinite values")
    if x.shape[-1] < int(0.5 * fs):
        raise ECGError(source, f"record too short for R-peak detection ({x.shape[-1] / fs:.2f} s)")
    energy = ecg_energy(x, fs)
    reason = None
    try:
        peaks = _neurokit(energy, fs)
        if len(peaks):  # e.g. a partial QRS or P wave at the record edge
            peaks = peaks[energy[peaks] >= MIN_ENERGY_FRACTION * np.median(energy[peaks])]
        reason = _implausible(peaks, energy, fs)
    except Exception as exc:  # neurokit2 raises assorted errors on odd inputs; the fallback covers them
        peaks, reason = np.array([], dtype=np.int64), f"neurokit2 failed: {type(exc).__name__}: {exc}"
    method = "neurokit2"
    if reason is not None:
        method, peaks = "fallback", _fallback(energy, fs)
    if not len(peaks):
        raise ECGError(source, "no R peaks detected")
    hp = bandpass(x, fs, 0.5, 45.0)
    lead, sign = _dominant_lead(hp, peaks, fs)
    w = int(round(REFINE_S * fs))
    refined = []
    for p in peaks:
        a, b = max(0, p - w), min(x.shape[-1], p + w + 1)
        refined.append(a + int(np.argmax(sign * hp[lead, a:b])))
    refined = _merge_close(np.asarray(refined, dtype=np.int64), sign * hp[lead], int(REFRACTORY_S * fs))
    info = {"method": method, "fallback_reason": reason, "refine_lead": lead, "polarity": sign,
            "sampling_rate": fs, "n_peaks": int(len(refined))}
    return refined, info
