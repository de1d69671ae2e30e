"""Synthetic 12-lead ECGs with known fiducials, for tests and demos.

Each beat is a sum of Gaussian waves (P, Q, R, S, an asymmetric T) plus a
smooth ST plateau, placed at R-peak times that fall exactly on samples. Times
below are relative to the R peak; ``D`` is ``qrs_ms``:

=====  ===========================  ======================  =========================
wave   centre                       width (sigma)           fiducials it defines
=====  ===========================  ======================  =========================
P      P onset + 2 sigma_P          P duration / 4          P onset/offset = centre -/+ 2 sigma_P
Q      -D/4                         D/12                    QRS onset = Q centre - 3 sigma_Q = -D/2
R      0                            D/10                    the R peak (a sample)
S      +D/4                         D/12                    QRS offset (J) = S centre + 3 sigma_S = +D/2
T      T end - 2 sigma_T2           rising 0.175 QT,        T onset = centre - 2 sigma_T1,
                                    falling sigma_T2 0.1 QT T end = centre + 2 sigma_T2
=====  ===========================  ======================  =========================

So PR = P onset to QRS onset = ``pr_ms``, QRS duration = ``qrs_ms`` and QT = QRS
onset to T end = ``qt_ms``. The P and T limits sit where the tangent at the
steepest slope of a Gaussian meets the baseline (centre -/+ 2 sigma: the tangent
method for P onset and T end); QRS limits sit where the outer waves are at 1 % of
their peak. The P duration is ``min(100 ms, 0.6 PR)``. The ST plateau rises
smoothly over the last third of the QRS, holds ``st_mv`` (projected per lead)
until the T peak and falls to zero at T end.

Lead amplitudes come from a dipole projection. Each wave has a frontal-plane
direction (P at 60 degrees; Q, R, S, ST and T along ``axis_deg``, Q and S with
negative amplitude, so the net QRS area vector points along ``axis_deg``) and
leads I and II see it as ``amplitude * cos(direction - lead angle)`` (I at 0,
II at 60 degrees). III, aVR, aVL and aVF are derived from I and II
(Einthoven/Goldberger: III = II - I exactly). The precordial leads use a fixed
gain per wave and lead (``PRECORDIAL_GAINS``): an R wave growing from V1 to V5
with the S wave shrinking. Noise and baseline wander are added to the eight
independent leads before the derivation, as on a real 12-lead recorder.

Ectopic beats (``ectopic_at``, beat numbers counted from the first R in the
record) are premature ventricular complexes: 65 % of the RR interval after the
beat before, followed by a compensatory pause, no P wave, a wide QRS
(``max(1.8 D, 140 ms)``) pointing opposite the sinus axis and a discordant T.
"""
from __future__ import annotations

import numpy as np

from ..errors import ECGError
from ..io.leads import STANDARD_LEADS, derive_limb_leads
from .measure import qrs_amplitudes

P_AMPLITUDE_MV = 0.15
Q_FRACTION = -0.15          # Q amplitude as a fraction of the R amplitude
S_FRACTION = -0.35          # S amplitude as a fraction of the R amplitude
PVC_PREMATURITY = 0.65      # coupling interval of an ectopic beat, fraction of RR
_INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")

# Precordial gain of each wave in V1..V6 (multiplies the wave's own amplitude).
PRECORDIAL_GAINS: dict[str, tuple[float, ...]] = {
    "P": (0.6, 0.7, 0.7, 0.7, 0.7, 0.6),
    "Q": (0.0, 0.0, 0.1, 0.6, 1.0, 1.0),
    "R": (0.2, 0.45, 0.8, 1.2, 1.3, 1.0),
    "S": (2.4, 3.0, 2.0, 1.2, 0.6, 0.25),
    "ST": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "T": (0.2, 1.2, 1.4, 1.3, 1.0, 0.8),
    "PVC_R": (-1.0, -1.2, -1.1, -0.6, 0.3, 0.6),
    "PVC_T": (1.0, 1.2, 1.1, 0.6, -0.3, -0.6),
}


def _lead_gains(angle_deg: float, precordial: tuple[float, ...]) -> np.ndarray:
    """Gains in (I, II, V1..V6) of a wave whose frontal direction is ``angle_deg``."""
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.cos(a - np.pi / 3), *precordial])


def _gauss(t: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2)


def _asym_gauss(t: np.ndarray, centre: float, sigma_up: float, sigma_down: float) -> np.ndarray:
    sigma = np.where(t < centre, sigma_up, sigma_down)
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2)


def _smoothstep(t: np.ndarray, start: float, stop: float) -> np.ndarray:
    """0 before ``start``, 1 after ``stop``, a cosine ramp between."""
    x = np.clip((t - start) / (stop - start), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def _beat_waves(p: dict, ectopic: bool) -> tuple[list[tuple[np.ndarray, object]], dict[str, float]]:
    """The waves of one beat as (gains over the 8 independent leads, shape(t)), and its fiducials (s, from R)."""
    d, qt, pr = p["qrs_ms"] / 1e3, p["qt_ms"] / 1e3, p["pr_ms"] / 1e3
    axis, r, st, tamp = p["axis_deg"], p["r_amplitude_mv"], p["st_mv"], p["t_amplitude_mv"]
    g = PRECORDIAL_GAINS
    if ectopic:
        de = max(1.8 * d, 0.14)
        on, off = -de / 2, de / 2
        s_t2, s_t1 = 0.1 * qt, 0.175 * qt
        t_end = on + qt + 0.04
        c_t = t_end - 2 * s_t2
        waves = [
            (1.4 * r * _lead_gains(axis + 180, g["PVC_R"]), lambda t: _gauss(t, 0.0, de / 7)),
            (-0.5 * r * _lead_gains(axis + 180, g["PVC_R"]), lambda t: _gauss(t, de / 4, de / 12)),
            (1.5 * tamp * _lead_gains(axis, g["PVC_T"]), lambda t: _asym_gauss(t, c_t, s_t1, s_t2)),
        ]
        fid = {"p_onset": np.nan, "p_offset": np.nan, "qrs_onset": on, "qrs_offset": off,
               "t_onset": c_t - 2 * s_t1, "t_peak": c_t, "t_end": t_end}
        return waves, fid
    on, off = -d / 2, d / 2
    p_dur = min(0.1, 0.6 * pr)
    s_p = p_dur / 4
    c_p = on - pr + 2 * s_p
    s_t2, s_t1 = 0.1 * qt, 0.175 * qt
    t_end = on + qt
    c_t = t_end - 2 * s_t2
    waves = [
        (P_AMPLITUDE_MV * _lead_gains(60.0, g["P"]), lambda t: _gauss(t, c_p, s_p)),
        (Q_FRACTION * r * _lead_gains(axis, g["Q"]), lambda t: _gauss(t, -d / 4, d / 12)),
        (r * _lead_gains(axis, g["R"]), lambda t: _gauss(t, 0.0, d / 10)),
        (S_FRACTION * r * _lead_gains(axis, g["S"]), lambda t: _gauss(t, d / 4, d / 12)),
        (st * _lead_gains(axis, g["ST"]), lambda t: _smoothstep(t, off - d / 3, off) * (1 - _smoothstep(t, c_t, t_end))),
        (tamp * _lead_gains(axis, g["T"]), lambda t: _asym_gauss(t, c_t, s_t1, s_t2)),
    ]
    fid = {"p_onset": c_p - 2 * s_p, "p_offset": c_p + 2 * s_p, "qrs_onset": on, "qrs_offset": off,
           "t_onset": c_t - 2 * s_t1, "t_peak": c_t, "t_end": t_end}
    return waves, fid


def _render(waves, t: np.ndarray) -> np.ndarray:
    """(8, len(t)) independent-lead signal of one beat at times ``t`` (s from R)."""
    out = np.zeros((len(_INDEPENDENT), len(t)))
    for gains, shape in waves:
        out += gains[:, None] * shape(t)[None, :]
    return out


def _to_twelve(x8: np.ndarray) -> np.ndarray:
    """(12, n) float32 in standard order from (8, n) I, II, V1..V6 (derived leads computed in float32)."""
    x8 = x8.astype(np.float32)
    derived = derive_limb_leads(x8[0], x8[1])
    rows = {"I": x8[0], "II": x8[1], **derived, **{f"V{i}": x8[1 + i] for i in range(1, 7)}}
    return np.stack([rows[n] for n in STANDARD_LEADS]).astype(np.float32)


def _lead_truth(p: dict, fid: dict) -> dict[str, dict[str, float]]:
    """Per-lead amplitudes of the clean sinus beat on a 0.1-ms grid, by ``ecg_measure``'s definitions.

    R and S over the true QRS (``qrs_amplitudes``), ST at the true J + 60 ms,
    T at the true T peak.
    """
    waves, _ = _beat_waves(p, ectopic=False)
    t = np.arange(-0.6, p["qt_ms"] / 1e3 + 0.2, 1e-4)
    x = _to_twelve(_render(waves, t)).astype(np.float64)
    qrs = (t >= fid["qrs_onset"]) & (t <= fid["qrs_offset"])
    truth: dict[str, dict[str, float]] = {"r_amplitude_mv": {}, "s_amplitude_mv": {}, "st_mv": {}, "t_amplitude_mv": {}}
    i_st = int(np.argmin(np.abs(t - (fid["qrs_offset"] + 0.06))))
    i_t = int(np.argmin(np.abs(t - fid["t_peak"])))
    for li, lead in enumerate(STANDARD_LEADS):
        truth["r_amplitude_mv"][lead], truth["s_amplitude_mv"][lead] = qrs_amplitudes(x[li, qrs])
        truth["st_mv"][lead] = float(x[li, i_st])
        truth["t_amplitude_mv"][lead] = float(x[li, i_t])
    return truth


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise ECGError(None, f"ecg_simulate: {name}={value!r} outside [{lo}, {hi}]")


def ecg_simulate(
    duration: float = 10.0,
    sampling_rate: float = 500,
    heart_rate: float = 70,
    *,
    rr_jitter: float = 0.0,
    noise: float = 0.0,
    baseline_wander: float = 0.0,
    pr_ms: float = 160,
    qrs_ms: float = 90,
    qt_ms: float = 400,
    axis_deg: float = 60,
    r_amplitude_mv: float = 1.2,
    st_mv: float = 0.0,
    t_amplitude_mv: float = 0.3,
    ectopic_at=(),
    seed: int | None = None,
) -> tuple[np.ndarray, dict]:
    """A synthetic 12-lead ECG (float32, (12, n), mV) and its ground truth.

    ``rr_jitter`` is the relative SD of the RR intervals, ``noise`` the SD of
    white noise (mV), ``baseline_wander`` the peak amplitude (mV) of slow
    (0.15-0.4 Hz) drift; both are independent per electrode lead. The first R
    in the record lies 0.6 RR after the start (the beat before it shows its T
    wave). ``info``: ``r_peaks`` (sample indices), ``rr`` (s), ``heart_rate``
    (60 / median RR), the interval parameters, per-lead ``r_amplitude_mv``,
    ``s_amplitude_mv``, ``st_mv`` (at J + 60 ms) and ``t_amplitude_mv`` (at the T
    peak) of the sinus beat, per-beat fiducials in samples (``p_onsets``,
    ``p_offsets``, ``qrs_onsets``, ``qrs_offsets``, ``t_onsets``, ``t_offsets``;
    NaN where a beat has none), ``fiducials_ms`` of the sinus beat relative to R,
    and ``ectopic`` (indices into ``r_peaks``). See the module docstring for the
    wave model.
    """
    fs = float(sampling_rate)
    _check("sampling_rate", fs, 50.0, 20000.0)
    _check("duration", float(duration), 0.1, 3600.0)
    _check("heart_rate", float(heart_rate), 20.0, 250.0)
    _check("qrs_ms", float(qrs_ms), 40.0, 250.0)
    _check("pr_ms", float(pr_ms), 60.0, 400.0)
    _check("qt_ms", float(qt_ms), float(qrs_ms) + 100.0, 700.0)
    for name, v in (("rr_jitter", rr_jitter), ("noise", noise), ("baseline_wander", baseline_wander)):
        _check(name, float(v), 0.0, 10.0)
    rng = np.random.default_rng(seed)
    params = dict(pr_ms=float(pr_ms), qrs_ms=float(qrs_ms), qt_ms=float(qt_ms), axis_deg=float(axis_deg),
                  r_amplitude_mv=float(r_amplitude_mv), st_mv=float(st_mv), t_amplitude_mv=float(t_amplitude_mv))
    n = int(round(duration * fs))
    rr0 = 60.0 / heart_rate
    ectopic_set = {int(i) for i in ectopic_at}

    # Beat times: one beat before the record, then beats until past the end.
    times, kinds = [0.6 * rr0 - rr0], [False]
    k = 0
    while times[-1] < duration + 0.6:
        rr = rr0 * (1.0 + rr_jitter * rng.standard_normal()) if rr_jitter else rr0
        rr = float(np.clip(rr, 0.5 * rr0, 1.5 * rr0))
        if k == 0:
            nxt = 0.6 * rr0
        elif k in ectopic_set:
            nxt = times[-1] + PVC_PREMATURITY * rr
        elif (k - 1) in ectopic_set:
            nxt = times[-1] + (2.0 - PVC_PREMATURITY) * rr
        else:
            nxt = times[-1] + rr
        times.append(nxt)
        kinds.append(k in ectopic_set)
        k += 1
    idx = np.round(np.asarray(times) * fs).astype(np.int64)

    x8 = np.zeros((len(_INDEPENDENT), n))
    sinus_waves, sinus_fid = _beat_waves(params, ectopic=False)
    pvc_waves, pvc_fid = _beat_waves(params, ectopic=True)
    span_lo, span_hi = int(np.ceil(0.7 * fs)), int(np.ceil((qt_ms / 1e3 + 0.4) * fs))
    fid_rows = []
    for r, ect in zip(idx, kinds):
        lo, hi = max(0, r - span_lo), min(n, r + span_hi)
        if lo < hi:
            t = (np.arange(lo, hi) - r) / fs
            x8[:, lo:hi] += _render(pvc_waves if ect else sinus_waves, t)
        fid_rows.append(pvc_fid if ect else sinus_fid)
    if noise:
        x8 += noise * rng.standard_normal(x8.shape)
    if baseline_wander:
        t = np.arange(n) / fs
        for row in x8:
            for _ in range(2):
                f, ph = rng.uniform(0.15, 0.4), rng.uniform(0, 2 * np.pi)
                row += 0.5 * baseline_wander * np.sin(2 * np.pi * f * t + ph)
    signal = _to_twelve(x8)

    inside = (idx >= 0) & (idx < n)
    r_peaks = idx[inside]
    kinds_in = [kd for kd, ok in zip(kinds, inside) if ok]
    fids_in = [fd for fd, ok in zip(fid_rows, inside) if ok]
    rr = np.diff(r_peaks) / fs
    names = {"p_onsets": "p_onset", "p_offsets": "p_offset", "qrs_onsets": "qrs_onset",
             "qrs_offsets": "qrs_offset", "t_onsets": "t_onset", "t_offsets": "t_end"}
    per_beat = {out: np.array([r + fd[key] * fs for r, fd in zip(r_peaks, fids_in)], dtype=float)
                for out, key in names.items()}
    info = {
        "sampling_rate": fs,
        "leads": STANDARD_LEADS,
        "r_peaks": r_peaks,
        "rr": rr,
        "heart_rate": float(60.0 / np.median(rr)) if len(rr) else float(heart_rate),
        "pr_ms": params["pr_ms"],
        "qrs_ms": params["qrs_ms"],
        "qt_ms": params["qt_ms"],
        "axis_deg": params["axis_deg"],
        **_lead_truth(params, sinus_fid),
        **per_beat,
        "fiducials_ms": {k: v * 1e3 for k, v in sinus_fid.items()},
        "ectopic": [i for i, kd in enumerate(kinds_in) if kd],
        "params": {**params, "heart_rate": float(heart_rate), "rr_jitter": float(rr_jitter), "noise": float(noise),
                   "baseline_wander": float(baseline_wander), "seed": seed},
    }
    return signal, info
