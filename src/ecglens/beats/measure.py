"""Global ECG measurements from a median beat: intervals, axis, amplitudes, ST levels.

Methods (all on the baseline-corrected beat):

* Baseline: per lead, the median level of the isoelectric window, the flattest
  20 ms (least summed peak-to-peak over leads) in [-0.3, -0.04] s before R.
* The beat is interpolated to >= 1 kHz (cubic spline) so that slopes
  and crossings are not tied to a coarse sample grid, and smoothed with a
  Gaussian (sigma 3 ms, -3 dB near 44 Hz; no ringing) so that slopes are not
  noise and the measurements hardly depend on how much high-frequency
  content the sampling rate kept.
* QRS onset/offset: the spatial velocity ``v(t) = RMS over leads of dx/dt``
  (then averaged over 8 ms). The QRS core is the run of ``v >= max(6 % of
  the peak velocity, 4 x noise velocity)`` that holds the velocity peak near
  R (gaps under 20 ms bridged: the R apex, a notch). Each end is then
  followed outward down the flank to its foot: where ``v`` falls to the
  larger of a fraction of the peak (2 % at the onset, 4 % at the end), 2 x
  noise and 3 x the median velocity 20-60 ms beyond the core (the PR or ST
  segment's own slope and noise), or the valley before ``v`` rises again by
  2 % of the peak (a P or T wave next to the QRS). The noise velocity is the
  10th percentile of ``v`` over the beat. The end needs the higher limits:
  the terminal QRS runs into the ST segment, whose slope keeps ``v`` above
  2 % of the peak for 5-15 ms past the J point that the devices mark (on
  their own median beats ``v`` is 3-6 % of the peak at their global QRS
  end), and the velocity of a PR or ST segment fluctuates well beyond 1.5 x
  its median (bench/device_measurements.py).
* P onset: the foot of the P wave's first slope on its spatial velocity
  ``vp`` (RMS over leads of dx/dt with the beat smoothed further by a
  Gaussian of sigma 8 ms, for the P wave's lower frequencies), after the
  wavelet-modulus rule of Martinez et al. (2004): a threshold relative to
  the wave's own slope, followed back from it. The P wave is the largest
  bump of the magnitude ``m(t) = RMS over leads of x`` 30-350 ms before the
  QRS onset (from 20 ms after the previous beat's T end, and past the first
  valley when the search opens on the slope of a wave); its rise starts
  where ``m`` last lies within 15 % of the way from its low before the P
  wave to the P peak. The first hump of ``vp`` is where ``vp`` first reaches
  half its maximum on that rise; the onset is where ``vp``, followed back
  from it, falls to the larger of 35 % of the hump's peak and 3 x its median
  20-60 ms earlier (the baseline before the P wave), or the valley before
  ``vp`` rises again. The first hump, not the steepest point: a P wave can
  rise in two steps, and the tangent at the steepest rise of ``m`` (the
  former method) started the P wave 5-21 ms after the devices' P onsets on
  their own median beats (on the DICOM's, at its second step). A velocity,
  not a level: the PR segment, where the isoelectric level is taken, can sit
  0.06-0.1 mV (lead II) below the level before the P wave
  (bench/device_measurements.py). On the simulator's Gaussian P waves the
  onset falls 7-8 ms before centre - 2 sigma.
* T end: the trapezium-area method (Vazquez-Seisdedos et al. 2011) on ``m``:
  with ``xm`` the steepest falling point after the T peak and ``xr = xm +
  100 ms``, the T end is the ``xi`` in [xm, xr] that maximises the area of the
  trapezium (xm, m(xm)), (xi, m(xi)), (xr, m(xi)), (xr, m(xm)), i.e. the knee
  where the falling limb meets what follows it. The tangent at ``xm`` ends a
  T wave whose tail flattens slowly too early (7-25 ms before the devices' T
  ends on their own median beats); on the simulator's Gaussian T waves
  (falling sigma 34-46 ms) the knee lies 13-16 ms after centre + 2 sigma.
* A P (T) wave whose magnitude does not rise ``WAVE_MIN_MV`` and 3 noise
  levels above the isoelectric level is reported as absent (None).
* QTc: Bazett, QT / sqrt(RR in s).
* Frontal QRS axis: ``atan2(2/sqrt(3) * area(aVF), area(I))`` over the QRS
  (aVF = sqrt(3)/2 * E sin(axis) for Goldberger's augmented lead).
* Per lead, read from the QRS samples themselves (not interpolated or
  filtered): R = the highest positive peak (0 if none), S = the depth
  (positive mV) of the lowest point after the initial r (the first peak of at
  least 0.05 mV; in a QS complex the lowest point), see ``qrs_amplitudes``.
  From the interpolated, smoothed beat: ST level at J + 60 ms and T amplitude
  (signed) at the T peak of ``m``.

Times are reported in ms relative to the R peak (negative before it).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ECGError
from ..io.leads import STANDARD_LEADS

ISO_SEARCH_S = (-0.3, -0.04)
ISO_WINDOW_S = 0.02
QRS_HIGH_FRACTION = 0.06
QRS_LOW_FRACTION = 0.02
QRS_END_FRACTION = 0.04
QRS_RISE_FRACTION = 0.02
OUTSIDE_FACTOR = 3.0
VELOCITY_SMOOTH_S = 0.008
NOISE_FACTOR = 4.0
QRS_GAP_S = 0.02
WAVE_MIN_MV = 0.015
ST_OFFSET_S = 0.06
T_END_REFERENCE_S = 0.1
R_MIN_MV = 0.05
FINE_RATE = 1000.0
SMOOTH_SIGMA_S = 0.003
P_SIGMA_S = 0.008
P_RISE_FRACTION = 0.15
P_HUMP_FRACTION = 0.5
P_FOOT_FRACTION = 0.35


def isoelectric_search(n_samples: int, sampling_rate: float, r_index: int) -> tuple[int, int, int]:
    """(lo, hi, width): the isoelectric window is the flattest ``width`` samples (20 ms) within [lo, hi).

    [lo, hi) is [-0.3, -0.04] s before R clipped to a beat of ``n_samples``;
    ``hi - lo < width`` means no room.
    """
    fs = float(sampling_rate)
    w = max(2, int(round(ISO_WINDOW_S * fs)) + 1)
    lo = max(0, r_index + int(round(ISO_SEARCH_S[0] * fs)))
    hi = min(n_samples, r_index + int(round(ISO_SEARCH_S[1] * fs)) + 1)
    return lo, hi, w


def flattest_start(region: np.ndarray, width: int) -> np.ndarray:
    """Start, within ``region`` (..., leads, k), of the ``width`` samples with the least summed peak-to-peak over leads."""
    x = np.asarray(region, dtype=np.float64)
    k = x.shape[-1] - width + 1
    top, bottom = x[..., :k].copy(), x[..., :k].copy()  # running max and min: ptp of every window, no window copies
    for j in range(1, width):
        np.maximum(top, x[..., j:j + k], out=top)
        np.minimum(bottom, x[..., j:j + k], out=bottom)
    return np.argmin((top - bottom).sum(axis=-2), axis=-1)


def beat_isoelectric_window(beat: np.ndarray, sampling_rate: float, r_index: int) -> tuple[int, int]:
    """Sample range [start, stop) of the flattest 20 ms in [-0.3, -0.04] s before R (the PR isoelectric point).

    Flatness is the sum over leads of the peak-to-peak within the window; the
    search is clipped to the beat, and a beat with too little room before R
    falls back to its first samples.
    """
    x = np.asarray(beat, dtype=np.float64)
    lo, hi, w = isoelectric_search(x.shape[-1], sampling_rate, r_index)
    if hi - lo < w:
        return 0, min(w, x.shape[-1])
    start = lo + int(flattest_start(x[:, lo:hi], w))
    return start, start + w


def beat_baseline(beat: np.ndarray, sampling_rate: float, r_index: int) -> np.ndarray:
    """Per-lead isoelectric level (median over the isoelectric window), shape (leads, 1)."""
    a, b = beat_isoelectric_window(beat, sampling_rate, r_index)
    return np.median(np.asarray(beat, dtype=np.float64)[:, a:b], axis=-1, keepdims=True)


def qrs_amplitudes(qrs: np.ndarray) -> tuple[float, float]:
    """(R, S) in mV of one lead's baseline-corrected QRS samples, both >= 0.

    R is the highest positive peak (an interior local maximum, so a J point
    still rising at the QRS end is no R; 0 if none). S is the depth of the
    lowest point after the first peak of at least R_MIN_MV (the initial r);
    with no such peak (a QS complex) it is the depth of the lowest point.
    """
    q = np.asarray(qrs, dtype=np.float64)
    inner = np.arange(1, len(q) - 1)
    peaks = inner[(q[inner] >= q[inner - 1]) & (q[inner] >= q[inner + 1]) & (q[inner] > 0)]
    r = float(q[peaks].max()) if len(peaks) else 0.0
    big = peaks[q[peaks] >= R_MIN_MV]
    tail = q[big[0]:] if len(big) else q
    return r, max(0.0, -float(tail.min()))


def _upsample(x: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, int]:
    """Cubic-spline interpolation by an integer factor to >= FINE_RATE.

    A spline rather than band-limited (sinc) interpolation: it does not ring
    after a QRS that is narrow for the sampling grid, which would stretch
    the velocity-threshold QRS limits.
    """
    from scipy import interpolate

    up = max(1, int(math.ceil(FINE_RATE / float(sampling_rate))))
    if up == 1:
        return x, 1
    n = x.shape[-1]
    fine = np.arange((n - 1) * up + 1) / up
    return interpolate.CubicSpline(np.arange(n), x, axis=-1)(fine), up


def _p_onset(v: np.ndarray, lo: int, peak: int, limit: int, ff: float) -> float | None:
    """P onset (sample position, or None) on the P wave's velocity ``v``: the foot of its first hump in [lo, peak].

    The first hump is where ``v`` first reaches P_HUMP_FRACTION of its maximum in [lo, peak] (up to that
    hump's own peak); from there ``v`` is followed back, no further than ``limit``, to where it falls to the
    larger of P_FOOT_FRACTION of the hump's peak and OUTSIDE_FACTOR x its median 20-60 ms earlier (the
    baseline before the P wave), or to the valley before it rises again (``_foot``).
    """
    if peak - lo < 2:
        return None
    seg = v[lo:peak + 1]
    i = lo + int(np.flatnonzero(seg >= P_HUMP_FRACTION * seg.max())[0])
    top = i
    while top < peak and v[top + 1] >= v[top]:
        top += 1
    before = v[max(limit, i - int(round(0.06 * ff))):max(limit, i - int(round(0.02 * ff)))]
    low = max(P_FOOT_FRACTION * v[top], OUTSIDE_FACTOR * float(np.median(before)) if len(before) else 0.0)
    foot = _foot(v, i, limit, low, P_FOOT_FRACTION * v[top], step=-1)
    return None if foot is None else float(foot)


def _trapezium_end(m: np.ndarray, peak: int, stop: int, limit: int, width: int) -> float | None:
    """The trapezium-area end of the wave of ``m`` that peaks at ``peak`` (sample position, or None).

    ``xm`` is the steepest fall between ``peak`` and ``stop``; the end is the ``xi``
    in [xm, min(xm + width, limit)] with the largest area ``(m(xm) - m(xi)) * (2 xr - xi - xm) / 2``.
    """
    if stop - peak < 2:
        return None
    slope = np.gradient(m)
    xm = peak + int(np.argmin(slope[peak:stop + 1]))
    xr = min(xm + width, limit)
    xi = np.arange(xm, xr + 1)
    area = (m[xm] - m[xi]) * (2 * xr - xi - xm)
    best = int(np.argmax(area))
    return None if slope[xm] >= 0 or area[best] <= 0 else float(xi[best])


def _foot(v: np.ndarray, start: int, limit: int, low: float, rise: float, step: int) -> int | None:
    """Walk from ``start`` towards ``limit`` down the flank of ``v`` to its foot.

    The foot is where ``v`` first drops to ``low`` or, if ``v`` turns up again
    by more than ``rise`` first (the next wave), the lowest point passed.
    None if ``limit`` is reached before either.
    """
    best = start
    for i in range(start, limit + step, step):
        if v[i] <= low:
            return i
        if v[i] < v[best]:
            best = i
        elif v[i] > v[best] + rise:
            return best
    return None


def _gauss_smooth(x: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Gaussian smoothing (sigma 3 ms: -3 dB near 44 Hz): slopes without the noise, and unlike a Butterworth no ringing."""
    from scipy import ndimage

    return ndimage.gaussian_filter1d(x, SMOOTH_SIGMA_S * sampling_rate, axis=-1, mode="nearest")


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    from scipy import ndimage

    return x if n < 2 else ndimage.uniform_filter1d(x, n, mode="nearest")


def ecg_measure(
    median: np.ndarray,
    sampling_rate: float,
    r_index: int,
    *,
    rr: float | None = None,
    leads=STANDARD_LEADS,
) -> dict:
    """ECG measurements of a median beat (leads, m) in mV whose R peak is sample ``r_index``.

    ``rr`` (s, e.g. the median RR from ``ecg_medianbeat``) enables QTc and heart
    rate. Returns ``qrs_onset_ms``, ``qrs_offset_ms``, ``qrs_duration_ms``,
    ``p_onset_ms``, ``pr_interval_ms``, ``t_peak_ms``, ``t_end_ms``, ``qt_ms``,
    ``qtc_ms``, ``rr_ms``, ``heart_rate``, ``axis_deg`` and per-lead dicts
    ``r_amplitude_mv``, ``s_amplitude_mv``, ``st_mv`` (J + 60 ms),
    ``t_amplitude_mv``; anything that cannot be found is None. See the module
    docstring for the methods.
    """
    from scipy import ndimage

    x0 = np.asarray(median, dtype=np.float64)
    fs = float(sampling_rate)
    leads = tuple(leads)
    r_index = int(r_index)
    if x0.ndim != 2 or x0.shape[0] != len(leads) or not np.all(np.isfinite(x0)):
        raise ECGError(None, f"median beat must be finite, shaped ({len(leads)} leads, samples); got {x0.shape}")
    n = x0.shape[-1]
    if not (0 < r_index < n - 1) or not fs > 0:
        raise ECGError(None, f"r_index {r_index} outside the beat (0..{n - 1}) or bad sampling rate {sampling_rate!r}")
    x0 = x0 - beat_baseline(x0, fs, r_index)
    iso = beat_isoelectric_window(x0, fs, r_index)
    x, up = _upsample(x0, fs)
    ff = fs * up
    x = _gauss_smooth(x, ff)
    r = r_index * up
    nf = x.shape[-1]

    def at(seconds: float) -> int:
        return int(np.clip(r + round(seconds * ff), 0, nf - 1))

    def ms(i: float | None) -> float | None:
        return None if i is None else float((i - r) / ff * 1e3)

    vel = np.sqrt(np.mean(np.gradient(x, axis=-1) ** 2, axis=0)) * ff
    vel = _smooth(vel, int(round(VELOCITY_SMOOTH_S * ff)))
    mag = _smooth(np.sqrt(np.mean(x ** 2, axis=0)), int(round(0.01 * ff)))
    noise_v = float(np.percentile(vel, 10))
    iso_f = slice(iso[0] * up, max(iso[1] - 1, iso[0] + 1) * up)
    base_m = float(np.median(mag[iso_f]))
    noise_m = float(np.std(x[:, iso_f])) if iso_f.stop > iso_f.start else 0.0

    # QRS: the velocity run around the peak near R, widened down each flank to its foot.
    lo, hi = at(-0.2), at(0.25)
    pk_lo, pk_hi = at(-0.1), at(0.1)
    peak = pk_lo + int(np.argmax(vel[pk_lo:pk_hi + 1]))
    vmax = float(vel[peak])
    on = off = None
    if vmax > 0:
        high = max(QRS_HIGH_FRACTION * vmax, NOISE_FACTOR * noise_v)
        low = max(QRS_LOW_FRACTION * vmax, 2.0 * noise_v)
        low_end = max(QRS_END_FRACTION * vmax, 2.0 * noise_v)
        mask = vel[lo:hi + 1] >= high
        gap = max(1, int(round(QRS_GAP_S * ff)))
        mask = ndimage.binary_closing(np.pad(mask, gap), structure=np.ones(gap))[gap:-gap] | mask
        labels, _ = ndimage.label(mask)
        lab = labels[peak - lo]
        if lab:
            run = lo + np.flatnonzero(labels == lab)
            a, b = int(run[0]), int(run[-1])
            w0, w1 = int(round(0.02 * ff)), int(round(0.06 * ff))
            before = vel[max(0, a - w1):max(0, a - w0)]
            after = vel[b + w0:b + w1]
            low_on = max(low, OUTSIDE_FACTOR * float(np.median(before))) if len(before) else low
            low_off = max(low_end, OUTSIDE_FACTOR * float(np.median(after))) if len(after) else low_end
            on = _foot(vel, a, lo, low_on, QRS_RISE_FRACTION * vmax, step=-1)
            off = _foot(vel, b, hi, low_off, QRS_RISE_FRACTION * vmax, step=1)

    out: dict = {"qrs_onset_ms": ms(on), "qrs_offset_ms": ms(off)}
    out["qrs_duration_ms"] = None if on is None or off is None else (off - on) / ff * 1e3

    # T end: trapezium area on the falling limb of the magnitude after the T peak.
    t_pk = t_end = None
    if off is not None:
        end_s = 0.7 if rr is None else min(0.7, 0.85 * rr)
        a, b = off + int(round(0.04 * ff)), min(nf - 1, at(end_s))
        if b - a > 3:
            pk = a + int(np.argmax(mag[a:b]))
            if mag[pk] - base_m > max(WAVE_MIN_MV, 3 * noise_m) and pk < b - 1:
                t_pk = pk
                limit = min(nf - 1, pk + int(round(0.3 * ff)))
                below = np.flatnonzero(mag[pk:limit] <= base_m + 0.25 * (mag[pk] - base_m))
                stop = pk + int(below[0]) if len(below) else limit
                t_end = _trapezium_end(mag, pk, stop, limit, int(round(T_END_REFERENCE_S * ff)))
    out["t_peak_ms"] = ms(t_pk)
    out["t_end_ms"] = ms(t_end)
    # P onset: the foot of the first velocity hump of the P wave, the magnitude's bump before the QRS.
    p_on = None
    if on is not None:
        a, b = max(0, on - int(round(0.35 * ff))), on - int(round(0.03 * ff))
        if t_end is not None and rr is not None:  # not into the previous beat's T wave
            a = max(a, int(math.ceil(t_end - rr * ff + 0.02 * ff)))
        if b - a > 3:
            pk = a + int(np.argmax(mag[a:b]))
            if pk - a < int(round(0.03 * ff)):  # the window opens on the wave before the P: start at its first valley
                valley = np.flatnonzero((mag[pk + 1:b - 1] <= mag[pk:b - 2]) & (mag[pk + 1:b - 1] < mag[pk + 2:b]))
                if len(valley):
                    a = pk + 1 + int(valley[0])
                    pk = a + int(np.argmax(mag[a:b]))
            lo_p = a + int(np.argmin(mag[a:pk + 1]))
            rise = mag[pk] - base_m
            if a < pk < b - 1 and rise > max(WAVE_MIN_MV, 3 * noise_m) and mag[pk] - mag[lo_p] > 0.5 * rise:
                rising = np.flatnonzero(mag[lo_p:pk + 1] <= mag[lo_p] + P_RISE_FRACTION * (mag[pk] - mag[lo_p]))
                pad = int(round(4 * P_SIGMA_S * ff))  # the P wave's velocity over [a, pk], clear of the filter's edges
                c0, c1 = max(0, a - pad), min(nf, pk + pad + 1)
                x_p = ndimage.gaussian_filter1d(x[:, c0:c1], P_SIGMA_S * ff, axis=-1, mode="nearest")
                vel_p = np.sqrt(np.mean(np.gradient(x_p, axis=-1) ** 2, axis=0)) * ff
                p_on = _p_onset(vel_p, lo_p + int(rising[-1]) - c0, pk - c0, a - c0, ff)
                p_on = None if p_on is None else p_on + c0
    out["p_onset_ms"] = ms(p_on)
    out["pr_interval_ms"] = None if p_on is None or on is None else (on - p_on) / ff * 1e3

    qt = None if t_end is None or on is None else (t_end - on) / ff * 1e3
    out["qt_ms"] = qt
    out["rr_ms"] = None if rr is None else float(rr) * 1e3
    out["heart_rate"] = None if rr is None or rr <= 0 else 60.0 / float(rr)
    out["qtc_ms"] = None if qt is None or rr is None or rr <= 0 else qt / math.sqrt(float(rr))

    # Frontal axis from the net QRS areas in I and aVF.
    axis = None
    if on is not None and off is not None and "I" in leads and "aVF" in leads:
        area_i = float(x[leads.index("I"), on:off + 1].sum())
        area_f = float(x[leads.index("aVF"), on:off + 1].sum())
        if abs(area_i) + abs(area_f) > 1e-9:
            axis = math.degrees(math.atan2(2.0 / math.sqrt(3.0) * area_f, area_i))
    out["axis_deg"] = axis

    # Per-lead amplitudes.
    r_amp, s_amp, st, t_amp = {}, {}, {}, {}
    q0 = None if on is None else int(math.ceil(on / up - 0.5))
    q1 = None if off is None else int(math.floor(off / up + 0.5))
    i_st = None if off is None else off + int(round(ST_OFFSET_S * ff))
    for li, lead in enumerate(leads):
        if q0 is not None and q1 is not None and q1 >= q0:
            r_amp[lead], s_amp[lead] = qrs_amplitudes(x0[li, max(0, q0):min(n, q1 + 1)])
        else:
            r_amp[lead] = s_amp[lead] = None
        st[lead] = None if i_st is None or i_st >= nf else float(x[li, i_st])
        t_amp[lead] = None if t_pk is None else float(x[li, t_pk])
    out.update(r_amplitude_mv=r_amp, s_amplitude_mv=s_amp, st_mv=st, t_amplitude_mv=t_amp)
    out["isoelectric_ms"] = [(iso[0] - r_index) / fs * 1e3, (iso[1] - r_index) / fs * 1e3]
    return out
