"""Rhythm features of one record from its R peaks: what a median beat cannot show.

``ecg_rhythm(signal, sampling_rate, rpeaks)`` returns the interpretable
features ``RHYTHM_FEATURES`` (NaN where a record has too few beats for one):

=====================  ===============================================================
heart_rate_bpm         60 / median RR interval
rr_cv                  coefficient of variation of the RR intervals (SD / mean)
rmssd_ms               root mean square of successive RR differences, ms
pnn50                  fraction of successive RR differences larger than 50 ms
premature_fraction     fraction of RR intervals shorter than 80 % of the median RR
p_amplitude_mv         largest peak-to-peak amplitude over ``p_leads`` of the median
                       P window (R - 300 ms to R - 80 ms, each beat's window detrended
                       between its end points): a P wave locked to the QRS survives the
                       median, fibrillatory waves and noise average out
p_consistency          median over beats of the correlation between a beat's P windows
                       (``p_leads`` joined) and the median P window: ~1 for one P wave
                       before every QRS, ~0 without one
=====================  ===============================================================
"""
from __future__ import annotations

import numpy as np

from ..errors import ECGError

RHYTHM_FEATURES = ("heart_rate_bpm", "rr_cv", "rmssd_ms", "pnn50", "premature_fraction", "p_amplitude_mv",
                   "p_consistency")
RHYTHM_DESCRIPTIONS = {
    "heart_rate_bpm": "heart rate (bpm)",
    "rr_cv": "RR variability (coefficient of variation)",
    "rmssd_ms": "RR irregularity (RMSSD, ms)",
    "pnn50": "successive RR differences > 50 ms (fraction)",
    "premature_fraction": "premature beats (RR < 80% of median, fraction)",
    "p_amplitude_mv": "P wave amplitude before the QRS (mV)",
    "p_consistency": "P wave consistency beat to beat (correlation)",
}
P_WINDOW_S = (-0.30, -0.08)
PREMATURE_RATIO = 0.8
P_LEADS = (1, 6)  # II and V1 of the standard 12-lead order


def _rr_features(rr: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if len(rr) < 2:
        return {"heart_rate_bpm": 60.0 / float(rr[0]) if len(rr) else nan, "rr_cv": nan, "rmssd_ms": nan,
                "pnn50": nan, "premature_fraction": nan}
    d = np.diff(rr)
    med = float(np.median(rr))
    return {"heart_rate_bpm": 60.0 / med, "rr_cv": float(rr.std() / rr.mean()),
            "rmssd_ms": float(np.sqrt(np.mean(d ** 2)) * 1e3), "pnn50": float(np.mean(np.abs(d) > 0.05)),
            "premature_fraction": float(np.mean(rr < PREMATURE_RATIO * med))}


def _p_features(x: np.ndarray, fs: float, peaks: np.ndarray) -> dict[str, float]:
    """P-window amplitude and consistency (module docstring) of (leads, n) ``x`` at R peaks ``peaks``."""
    lo, hi = round(P_WINDOW_S[0] * fs), round(P_WINDOW_S[1] * fs)
    r = np.round(peaks).astype(np.int64)
    r = r[(r + lo >= 0) & (r + hi < x.shape[1])]
    if len(r) < 2 or hi - lo < 2:
        return {"p_amplitude_mv": float("nan"), "p_consistency": float("nan")}
    w = x[:, r[:, None] + np.arange(lo, hi + 1)[None, :]].transpose(1, 0, 2).astype(np.float64)  # (beats, leads, m)
    ramp = np.linspace(0.0, 1.0, w.shape[-1])
    w = w - (w[..., :1] + (w[..., -1:] - w[..., :1]) * ramp)
    template = np.median(w, axis=0)
    amplitude = float(np.max(np.ptp(template, axis=-1)))
    a = w.reshape(len(w), -1)
    a = a - a.mean(axis=1, keepdims=True)
    t = template.ravel() - template.mean()
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(t)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(norms > 0, a @ t / norms, np.nan)
    return {"p_amplitude_mv": amplitude,
            "p_consistency": float(np.nanmedian(corr)) if np.isfinite(corr).any() else float("nan")}


def ecg_rhythm(signal: np.ndarray, sampling_rate: float, rpeaks: np.ndarray | None = None, *,
               p_leads: tuple[int, ...] = P_LEADS, source: str | None = None) -> dict[str, float]:
    """Rhythm features (``RHYTHM_FEATURES``, module docstring) of a (leads, n) ECG in mV.

    ``rpeaks``: R-peak positions in samples of ``signal`` (may be fractional,
    e.g. found on a finer grid); found with ``ecg_findpeaks`` when omitted.
    ``p_leads`` indexes the leads whose P windows count (default II and V1 of
    a standard 12-lead record). Raises ``ECGError`` naming ``source`` for a
    signal that is not 2-D and finite or a lead index outside it.
    """
    x = np.asarray(signal, dtype=np.float64)
    fs = float(sampling_rate)
    if x.ndim != 2 or 0 in x.shape or not np.all(np.isfinite(x)):
        raise ECGError(source, f"expected a finite, non-empty (leads, samples) signal, got shape {x.shape}")
    if not fs > 0:
        raise ECGError(source, f"sampling rate must be positive, got {sampling_rate!r}")
    if not p_leads or min(p_leads) < -x.shape[0] or max(p_leads) >= x.shape[0]:
        raise ECGError(source, f"P-wave leads {p_leads} do not fit a signal of {x.shape[0]} leads")
    if rpeaks is None:
        from .rpeaks import ecg_findpeaks
        rpeaks = ecg_findpeaks(x, fs, source=source)[0]
    peaks = np.sort(np.asarray(rpeaks, dtype=np.float64).ravel())
    if not np.all(np.isfinite(peaks)):
        raise ECGError(source, "R peaks must be finite sample positions")
    rr = np.diff(peaks) / fs
    return {**_rr_features(rr), **_p_features(x[list(p_leads)], fs, peaks)}


def rhythm_vector(features: dict[str, float]) -> np.ndarray:
    """``ecg_rhythm`` output as a (len(RHYTHM_FEATURES),) float array in ``RHYTHM_FEATURES`` order."""
    return np.array([features[k] for k in RHYTHM_FEATURES], dtype=np.float64)
