"""The synthetic 12-lead ECG: lead algebra, timing, fiducials and ground truth."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ecglens.beats import ecg_simulate
from ecglens.errors import ECGError
from ecglens.io.leads import STANDARD_LEADS

LEAD = {name: i for i, name in enumerate(STANDARD_LEADS)}


def test_shape_dtype_and_determinism():
    x, info = ecg_simulate(10.0, 500, seed=3, noise=0.02, rr_jitter=0.05)
    assert x.shape == (12, 5000) and x.dtype == np.float32
    y, info2 = ecg_simulate(10.0, 500, seed=3, noise=0.02, rr_jitter=0.05)
    assert np.array_equal(x, y) and np.array_equal(info["r_peaks"], info2["r_peaks"])
    z, _ = ecg_simulate(10.0, 500, seed=4, noise=0.02, rr_jitter=0.05)
    assert not np.array_equal(x, z)
    assert info["leads"] == STANDARD_LEADS


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_einthoven_and_goldberger_hold_exactly(noise):
    x, _ = ecg_simulate(5.0, 250, axis_deg=-30, noise=noise, baseline_wander=0.2, seed=1)
    i, ii = x[LEAD["I"]], x[LEAD["II"]]
    assert np.array_equal(x[LEAD["III"]], ii - i)
    np.testing.assert_allclose(x[LEAD["aVR"]], -(i + ii) / 2, atol=1e-6)
    np.testing.assert_allclose(x[LEAD["aVL"]], i - ii / 2, atol=1e-6)
    np.testing.assert_allclose(x[LEAD["aVF"]], ii - i / 2, atol=1e-6)


@pytest.mark.parametrize("fs", [100, 250, 500, 1000])
def test_r_peaks_are_regular_samples_at_the_r_wave(fs):
    x, info = ecg_simulate(10.0, fs, heart_rate=75)
    r = info["r_peaks"]
    assert r[0] == round(0.6 * 0.8 * fs)  # first R 0.6 RR after the start
    assert np.all(np.abs(np.diff(r) - 0.8 * fs) <= 1)
    np.testing.assert_allclose(info["rr"], 0.8, atol=1.0 / fs)
    assert info["heart_rate"] == pytest.approx(75, abs=1)
    # Lead II at axis 60 sees the full R wave exactly on the sample (Q and S tails add < 1 %).
    assert np.all(np.abs(x[LEAD["II"], r] - 1.2) < 0.012)
    assert np.all(x[LEAD["V5"], r] == x[LEAD["V5"]].max())


def test_fiducials_follow_the_parameters():
    fs = 1000
    x, info = ecg_simulate(6.0, fs, pr_ms=180, qrs_ms=110, qt_ms=420, seed=0)
    np.testing.assert_allclose(info["qrs_offsets"] - info["qrs_onsets"], 110.0)
    np.testing.assert_allclose(info["qrs_onsets"] - info["p_onsets"], 180.0)
    np.testing.assert_allclose(info["t_offsets"] - info["qrs_onsets"], 420.0)
    f = info["fiducials_ms"]
    assert f["qrs_onset"] == pytest.approx(-55) and f["qrs_offset"] == pytest.approx(55)
    assert f["p_offset"] - f["p_onset"] == pytest.approx(100)  # min(100 ms, 0.6 PR)
    # Outside P onset..T end of a beat the clean signal is at baseline; inside the QRS it is not.
    r = info["r_peaks"][2]
    on, off = int(info["qrs_onsets"][2]), int(info["qrs_offsets"][2])
    assert np.abs(x[:, on - 5]).max() < 0.02 * 1.2
    assert np.abs(x[:, off + 1]).max() < 0.03 * 1.2
    assert np.abs(x[:, r - 20:r + 20]).max() > 1.0
    # The T wave peaks at the documented time and ends (tangent method) at T end.
    t_peak = r + int(round(f["t_peak"]))
    lead_ii = x[LEAD["II"]]
    assert int(np.argmax(lead_ii[r + 150:r + 500])) + r + 150 == t_peak
    sigma2 = (f["t_end"] - f["t_peak"]) / 2 / 1e3 * fs
    slope_at = int(round(t_peak + sigma2))
    slope = lead_ii[slope_at + 1] - lead_ii[slope_at - 1]
    tangent_end = slope_at - lead_ii[slope_at] / (slope / 2)
    assert tangent_end == pytest.approx(r + f["t_end"], abs=2)


@pytest.mark.parametrize("axis", [-30, 0, 60, 90, 120])
def test_frontal_leads_follow_the_axis(axis):
    _, info = ecg_simulate(3.0, 500, axis_deg=axis)
    a = math.radians(axis)
    r = info["r_amplitude_mv"]
    # Where a lead sees the R wave head-on its R amplitude is 1.2 mV times the projection (tails add < 3 %).
    for lead, angle in (("I", 0), ("II", 60), ("aVF", 90)):
        proj = 1.2 * math.cos(a - math.radians(angle)) * (math.sqrt(3) / 2 if lead == "aVF" else 1)
        if proj > 0.3:
            assert r[lead] == pytest.approx(proj, rel=0.03)
    lead_perpendicular = {-30: "II", 0: "aVF", 60: "aVL", 90: "I", 120: "aVR"}[axis]
    assert r[lead_perpendicular] < 0.01 and info["s_amplitude_mv"][lead_perpendicular] < 0.01


def test_precordial_r_wave_progression():
    _, info = ecg_simulate(3.0, 500)
    r = [info["r_amplitude_mv"][f"V{i}"] for i in range(1, 7)]
    s = [info["s_amplitude_mv"][f"V{i}"] for i in range(1, 7)]
    assert r[0] < r[1] < r[2] < r[3] < r[4] and r[5] < r[4]
    assert s[1] > s[2] > s[3] > s[4] > s[5]
    assert s[0] > r[0] and r[5] > s[5]


@pytest.mark.parametrize("st", [0.2, -0.1])
def test_st_shift_at_j_plus_60(st):
    fs = 1000
    x, info = ecg_simulate(3.0, fs, st_mv=st)
    _, flat = ecg_simulate(3.0, fs, st_mv=0.0)
    r = info["r_peaks"][1]
    j60 = r + int(round(info["fiducials_ms"]["qrs_offset"])) + 60
    for lead in ("II", "V2", "aVR"):
        assert x[LEAD[lead], j60] == pytest.approx(info["st_mv"][lead], abs=1e-3)
    # The shift adds st_mv along the axis (lead II at 60 degrees, every V lead) on top of the T upstroke.
    shift = {lead: info["st_mv"][lead] - flat["st_mv"][lead] for lead in STANDARD_LEADS}
    assert shift["II"] == pytest.approx(st, abs=1e-4)
    assert shift["I"] == pytest.approx(st / 2, abs=1e-4)
    assert shift["aVR"] == pytest.approx(-0.75 * st, abs=1e-4)
    for i in range(1, 7):
        assert shift[f"V{i}"] == pytest.approx(st, abs=1e-4)
    assert abs(flat["st_mv"]["II"]) < 0.02


def test_ectopic_beat_is_premature_wide_and_without_p():
    fs = 500
    x, info = ecg_simulate(10.0, fs, heart_rate=60, ectopic_at=(4,))
    assert info["ectopic"] == [4]
    rr = info["rr"]
    assert rr[3] == pytest.approx(0.65, abs=0.004)  # coupling interval
    assert rr[3] + rr[4] == pytest.approx(2.0, abs=0.004)  # compensatory pause
    assert np.isnan(info["p_onsets"][4]) and not np.isnan(info["p_onsets"][3])
    width = info["qrs_offsets"] - info["qrs_onsets"]
    assert width[4] == pytest.approx(0.162 * fs) and width[3] == pytest.approx(0.09 * fs)
    # Its QRS points the other way: lead II goes negative at its R time.
    assert x[LEAD["II"], info["r_peaks"][4]] < -1.0


def test_noise_and_wander_levels():
    clean, _ = ecg_simulate(10.0, 500, seed=2)
    noisy, _ = ecg_simulate(10.0, 500, seed=2, noise=0.05)
    d = (noisy - clean)[[LEAD["I"], LEAD["II"], *range(6, 12)]]
    assert d.std() == pytest.approx(0.05, rel=0.05)
    drift, _ = ecg_simulate(10.0, 500, seed=2, baseline_wander=0.3)
    w = drift - clean
    assert 0.1 < np.abs(w[LEAD["V1"]]).max() <= 0.3 + 1e-6
    spectrum = np.abs(np.fft.rfft(w[LEAD["V1"]]))
    freqs = np.fft.rfftfreq(w.shape[1], 1 / 500)
    assert freqs[np.argmax(spectrum)] < 0.5


@pytest.mark.parametrize("kwargs", [
    {"heart_rate": 0}, {"qrs_ms": 10}, {"qt_ms": 150}, {"sampling_rate": 10}, {"noise": -1}, {"duration": 0},
])
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(ECGError):
        ecg_simulate(**kwargs)
