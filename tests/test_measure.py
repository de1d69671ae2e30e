"""ECG measurements on median beats of synthetic records with known intervals, axis and amplitudes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ecglens.beats import ecg_measure, ecg_medianbeat, ecg_simulate, median_beat
from ecglens.beats.measure import _p_onset, _trapezium_end, beat_isoelectric_window, qrs_amplitudes
from ecglens.io.leads import STANDARD_LEADS
from ecglens.samples import list_samples, load_sample

RATES = [100, 250, 500, 1000]


def _measured(fs: float, **kwargs) -> tuple[dict, dict]:
    """Measurements on the median beat of a 10-s synthetic record, and its ground truth."""
    x, truth = ecg_simulate(10.0, fs, seed=11, **kwargs)
    median, info = ecg_medianbeat(x, fs, source="synthetic")
    return ecg_measure(median, info["sampling_rate"], info["r_index"], rr=60.0 / info["heart_rate"]), truth


def _axis_error(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("params", [
    {},
    {"pr_ms": 200, "qrs_ms": 120, "qt_ms": 440},
    {"pr_ms": 120, "qrs_ms": 70, "qt_ms": 340, "heart_rate": 90},
    {"qrs_ms": 150, "qt_ms": 460, "heart_rate": 55},
])
def test_intervals(fs, params):
    m, truth = _measured(fs, **params)
    sample_ms = 1e3 / fs
    assert m["qrs_duration_ms"] == pytest.approx(truth["qrs_ms"], abs=sample_ms + 10)
    assert m["pr_interval_ms"] == pytest.approx(truth["pr_ms"], abs=20)
    assert m["qt_ms"] == pytest.approx(truth["qt_ms"], abs=20)
    f = truth["fiducials_ms"]
    assert m["qrs_onset_ms"] == pytest.approx(f["qrs_onset"], abs=sample_ms + 6)
    assert m["t_end_ms"] == pytest.approx(f["t_end"], abs=20)
    rr = 60.0 / truth["heart_rate"]
    assert m["rr_ms"] == pytest.approx(rr * 1e3, abs=sample_ms + 1)
    assert m["qtc_ms"] == pytest.approx(m["qt_ms"] / math.sqrt(m["rr_ms"] / 1e3))


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("axis", [-30, 0, 60, 90, 120])
def test_axis_and_r_amplitude(fs, axis):
    m, truth = _measured(fs, axis_deg=axis)
    assert _axis_error(m["axis_deg"], axis) <= 10
    lead = max(STANDARD_LEADS, key=lambda name: truth["r_amplitude_mv"][name] if name in ("I", "II", "III", "aVL", "aVF") else 0)
    assert m["r_amplitude_mv"][lead] == pytest.approx(truth["r_amplitude_mv"][lead], rel=0.05)
    if axis == 60:
        assert m["r_amplitude_mv"]["II"] == pytest.approx(truth["r_amplitude_mv"]["II"], rel=0.05)
        assert truth["r_amplitude_mv"]["II"] == pytest.approx(1.2, rel=0.01)


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("st", [0.0, 0.2, -0.1])
def test_st_level_and_t_amplitude(fs, st):
    m, truth = _measured(fs, st_mv=st)
    for lead in STANDARD_LEADS:
        assert m["st_mv"][lead] == pytest.approx(truth["st_mv"][lead], abs=0.03), lead
    assert m["st_mv"]["II"] == pytest.approx(st, abs=0.03)
    if st == 0.0:
        for lead in ("II", "V2", "V4", "aVR"):
            assert m["t_amplitude_mv"][lead] == pytest.approx(truth["t_amplitude_mv"][lead], abs=0.02)


@pytest.mark.parametrize("fs", [250, 500])
def test_r_and_s_amplitudes_per_lead(fs):
    m, truth = _measured(fs)
    for lead in STANDARD_LEADS:
        r, s = truth["r_amplitude_mv"][lead], truth["s_amplitude_mv"][lead]
        assert m["r_amplitude_mv"][lead] == pytest.approx(r, abs=0.03 + 0.03 * r), lead
        assert m["s_amplitude_mv"][lead] == pytest.approx(s, abs=0.03 + 0.1 * s), lead


def test_noisy_record_still_measures_within_tolerance():
    fs = 500
    m, truth = _measured(fs, noise=0.02, baseline_wander=0.2, rr_jitter=0.04, st_mv=0.1, axis_deg=30)
    assert m["qrs_duration_ms"] == pytest.approx(truth["qrs_ms"], abs=12)
    assert m["pr_interval_ms"] == pytest.approx(truth["pr_ms"], abs=20)
    assert m["qt_ms"] == pytest.approx(truth["qt_ms"], abs=20)
    assert _axis_error(m["axis_deg"], 30) <= 10
    assert m["st_mv"]["V2"] == pytest.approx(truth["st_mv"]["V2"], abs=0.03)


def test_qrs_amplitudes_definitions():
    assert qrs_amplitudes(np.array([0.0, -0.2, 1.0, -0.4, 0.0])) == pytest.approx((1.0, 0.4))      # qRs
    assert qrs_amplitudes(np.array([0.0, 0.1, -1.5, 0.0, 0.2])) == pytest.approx((0.1, 1.5))       # rS, J rising
    assert qrs_amplitudes(np.array([0.0, -0.5, -1.2, -0.3, 0.1])) == pytest.approx((0.0, 1.2))     # QS
    assert qrs_amplitudes(np.array([0.0, 0.02, -0.6, 0.0, 0.0])) == pytest.approx((0.02, 0.6))     # r too small: QS depth


def test_missing_waves_are_none_not_garbage():
    fs = 500
    x, _ = ecg_simulate(10.0, fs, heart_rate=60)
    median, info = ecg_medianbeat(x, fs)
    r = info["r_index"]
    no_p = median.copy()
    no_p[:, :r - int(0.07 * fs)] = 0.0  # P wave erased (as in atrial fibrillation)
    m = ecg_measure(no_p, fs, r, rr=1.0)
    assert m["p_onset_ms"] is None and m["pr_interval_ms"] is None
    assert m["qrs_duration_ms"] == pytest.approx(90, abs=12)
    no_t = median.copy()
    no_t[:, r + int(0.1 * fs):] = 0.0
    m = ecg_measure(no_t, fs, r)
    assert m["t_end_ms"] is None and m["qt_ms"] is None and m["qtc_ms"] is None
    assert all(v is None for v in m["t_amplitude_mv"].values())
    assert m["rr_ms"] is None and m["heart_rate"] is None
    flat = ecg_measure(np.zeros_like(median), fs, r, rr=1.0)
    assert flat["qrs_duration_ms"] is None and flat["axis_deg"] is None and flat["qt_ms"] is None
    assert all(v is None for v in flat["r_amplitude_mv"].values())
    limb = ecg_measure(median[6:], fs, r, leads=STANDARD_LEADS[6:])  # precordial leads only: no axis
    assert limb["axis_deg"] is None and limb["qrs_duration_ms"] is not None


def test_trapezium_t_end_is_the_knee_where_the_falling_limb_meets_the_flat_tail():
    # rises to 1 at sample 5, falls linearly to 0.1 at sample 23, then stays flat: the knee is sample 23
    m = np.concatenate([np.linspace(0.0, 1.0, 6), np.linspace(0.95, 0.1, 18), np.full(40, 0.1)])
    assert _trapezium_end(m, peak=5, stop=20, limit=len(m) - 1, width=30) == 23.0
    # a reference point beyond the end of the search is cut at ``limit``; a limb that does not fall has no end
    assert _trapezium_end(m, peak=5, stop=20, limit=40, width=100) == 23.0
    assert _trapezium_end(np.full(50, 0.3), peak=5, stop=20, limit=49, width=30) is None


def test_p_onset_is_the_foot_of_the_first_velocity_hump():
    # a P wave rising in two steps: velocity humps at 120 (peak 0.8) and 160 ms (peak 1), over 0.05 of baseline noise
    t = np.arange(300.0)
    v = 0.8 * np.exp(-0.5 * ((t - 120) / 8) ** 2) + np.exp(-0.5 * ((t - 160) / 10) ** 2) + 0.05
    # the foot of the first hump, not of the second (near 140): v = 35 % of the hump's peak 12.3 ms before it
    assert _p_onset(v, lo=0, peak=200, limit=0, ff=1000.0) == pytest.approx(107, abs=1)
    # a noisier baseline 20-60 ms before the hump: the walk back stops at 3 x its median (0.45), 9.4 ms before it
    noisy = v + np.where(t < 95, 0.1, 0.0)
    assert _p_onset(noisy, lo=0, peak=200, limit=0, ff=1000.0) == pytest.approx(110, abs=1)
    # a hump still high where the search must stop has no onset
    assert _p_onset(v, lo=108, peak=200, limit=108, ff=1000.0) is None


def test_isoelectric_window_is_the_flattest_stretch_before_r():
    fs = 500
    beat = np.zeros((2, 600))
    beat[:, :] = np.sin(np.arange(600) / 7.0)[None, :]
    beat[:, 80:95] = 0.3  # flat stretch 0.24 to 0.21 s before R (r_index 200)
    start, stop = beat_isoelectric_window(beat, fs, 200)
    assert 80 <= start and stop <= 95 and stop - start == 11


BOTH = [s.ecg_id for s in list_samples()]


@pytest.mark.parametrize("ecg_id", BOTH)
def test_bundled_records_have_plausible_measurements(ecg_id):
    info = next(s for s in list_samples() if s.ecg_id == ecg_id)
    for fs in info.rates:
        median, minfo = median_beat(load_sample(ecg_id, fs))
        m = ecg_measure(median, minfo["sampling_rate"], minfo["r_index"], rr=60.0 / minfo["heart_rate"])
        assert 40 <= m["heart_rate"] <= 180
        assert 60 <= m["qrs_duration_ms"] <= 200
        assert m["qt_ms"] is None or 250 <= m["qt_ms"] <= 550
        assert -180 <= m["axis_deg"] <= 180
        if "AFIB" in info.labels or "AFLT" in info.labels:
            assert m["pr_interval_ms"] is None
        elif "SR" in info.labels:
            assert 100 <= m["pr_interval_ms"] <= 260
