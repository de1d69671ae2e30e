"""Rhythm features on simulated ECGs whose R peaks and waves are known (``beats.simulate``)."""
from __future__ import annotations

import numpy as np
import pytest

from ecglens.beats import ecg_simulate
from ecglens.beats.rhythm import RHYTHM_FEATURES, ecg_rhythm, rhythm_vector
from ecglens.errors import ECGError


def test_regular_sinus_rhythm_by_hand():
    x, info = ecg_simulate(10, 500, heart_rate=60, seed=0)  # RR exactly 1 s
    f = ecg_rhythm(x, 500, info["r_peaks"])
    assert f["heart_rate_bpm"] == pytest.approx(60.0)
    assert f["rr_cv"] == 0.0 and f["rmssd_ms"] == 0.0 and f["pnn50"] == 0.0 and f["premature_fraction"] == 0.0
    # the simulated P wave: 0.15 mV along 60 degrees, so lead II sees all of it (II and V1 are the P leads)
    assert f["p_amplitude_mv"] == pytest.approx(0.15, abs=0.005)
    assert f["p_consistency"] == pytest.approx(1.0)
    assert ecg_rhythm(x, 500) == pytest.approx(f)  # R peaks found by ecg_findpeaks: the same features
    assert list(rhythm_vector(f)) == [f[k] for k in RHYTHM_FEATURES]


def test_one_ectopic_beat_by_hand():
    x, info = ecg_simulate(10, 500, heart_rate=60, ectopic_at=(4,), seed=0)
    rr = info["rr"]
    np.testing.assert_allclose(rr, [1, 1, 1, 0.65, 1.35, 1, 1, 1, 1])
    f = ecg_rhythm(x, 500, info["r_peaks"])
    # successive differences 0, 0, -0.35, +0.7, -0.35, 0, 0, 0 s
    assert f["rmssd_ms"] == pytest.approx(1e3 * np.sqrt((0.35 ** 2 + 0.7 ** 2 + 0.35 ** 2) / 8))
    assert f["pnn50"] == pytest.approx(3 / 8)
    assert f["premature_fraction"] == pytest.approx(1 / 9)  # 0.65 s < 0.8 x 1 s
    assert f["rr_cv"] == pytest.approx(np.std(rr) / np.mean(rr))
    assert f["heart_rate_bpm"] == pytest.approx(60.0)


def _without_p(x, info):
    """The record with each P wave removed (zeroed over twice its width: the Gaussian is 1e-3 of its peak there)."""
    out = x.copy()
    for a, b in zip(info["p_onsets"], info["p_offsets"]):
        if np.isfinite(a):
            out[:, max(int(a - (b - a) / 2), 0):int(b + (b - a) / 2) + 1] = 0.0
    return out


def test_p_waves_absent_or_not_locked_to_the_qrs():
    x, info = ecg_simulate(10, 500, heart_rate=75, seed=1)
    f_sinus = ecg_rhythm(x, 500, info["r_peaks"])
    f_none = ecg_rhythm(_without_p(x, info), 500, info["r_peaks"])
    assert f_sinus["p_amplitude_mv"] > 0.14 and f_sinus["p_consistency"] > 0.99
    assert f_none["p_amplitude_mv"] < 0.01
    # fibrillation-like: no P waves, irregular RR, 4-9 Hz atrial waves not locked to the QRS
    for seed in range(4):
        af, info = ecg_simulate(10, 500, heart_rate=100, rr_jitter=0.2, seed=seed)
        t = np.arange(af.shape[1]) / 500
        rng = np.random.default_rng(seed)
        fib = sum(0.03 * np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(4, 9, 5), rng.uniform(0, 6.3, 5)))
        f_af = ecg_rhythm(_without_p(af, info) + fib.astype(np.float32), 500, info["r_peaks"])
        assert f_af["p_consistency"] < 0.8 < f_sinus["p_consistency"]
        assert f_af["rr_cv"] > 0.1 and f_af["pnn50"] > 0.3


def test_irregular_rhythm_scores_higher_and_short_records_give_nan():
    x, info = ecg_simulate(10, 500, heart_rate=90, rr_jitter=0.2, seed=3)
    f = ecg_rhythm(x, 500, info["r_peaks"])
    regular = ecg_rhythm(*ecg_simulate(10, 500, heart_rate=90, seed=3)[:1], 500)
    assert f["rmssd_ms"] > 50 and f["rr_cv"] > 0.1 and f["pnn50"] > 0.3
    assert regular["rmssd_ms"] < 5
    two = ecg_rhythm(x, 500, info["r_peaks"][:2])
    assert two["heart_rate_bpm"] == pytest.approx(60 / info["rr"][0])
    assert np.isnan(two["rmssd_ms"]) and np.isnan(two["rr_cv"])
    with pytest.raises(ECGError, match="rec.npy"):
        ecg_rhythm(x[:, :0], 500, source="rec.npy")
    with pytest.raises(ECGError):
        ecg_rhythm(x, 500, info["r_peaks"], p_leads=(12,))
