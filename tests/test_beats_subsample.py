"""Sub-sample beat alignment (``subsample``): the interpolation helpers by hand, and the beats against the
whole-record path and the true R peaks of simulated records."""
from __future__ import annotations

import numpy as np
import pytest

from ecglens.beats import ecg_medianbeat, ecg_simulate
from ecglens.beats.median import cut_shifted, lanczos_weights, subsample_peaks
from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat
from ecglens.preprocess import resample_signal


def test_lanczos_weights_sum_to_one_and_frac_zero_is_the_sample():
    w = lanczos_weights(np.array([0.0, 0.3, 0.5, 0.99]), taps=8)
    assert w.shape == (4, 8)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[0], np.eye(8)[3], atol=1e-12)  # floor(t) is the 4th of 8 taps
    np.testing.assert_allclose(w[2][:4], w[2][::-1][:4])  # half way: symmetric


def test_cut_shifted_interpolates_a_band_limited_signal():
    t = np.arange(400)
    x = np.stack([np.sin(2 * np.pi * 0.05 * t), np.cos(2 * np.pi * 0.11 * t)])[None]  # (1, 2, 400)
    start = np.array([100.0, 150.25, 200.6])
    out = cut_shifted(x, np.zeros(3, dtype=np.int64), start, 50)
    ref = np.stack([np.stack([np.sin(2 * np.pi * 0.05 * (s + np.arange(50))),
                              np.cos(2 * np.pi * 0.11 * (s + np.arange(50)))]) for s in start])
    np.testing.assert_allclose(out, ref, atol=5e-3)  # Lanczos-6 passes 0.22 of the Nyquist rate to 0.3 %
    np.testing.assert_allclose(out[0], x[0, :, 100:150], atol=1e-6)  # whole samples: the samples themselves
    edge = cut_shifted(x, np.zeros(1, dtype=np.int64), np.array([-0.5]), 5)  # beyond the record: its edge repeats
    assert np.all(np.isfinite(edge))


def test_subsample_peaks_find_the_peak_between_samples():
    t = np.arange(300, dtype=np.float64)
    true = np.array([60.4, 150.8, 230.0])
    trace = sum(np.exp(-0.5 * ((t - c) / 2.0) ** 2) for c in true)[None]
    found = subsample_peaks(trace, np.round(true).astype(np.int64), np.zeros(3, dtype=np.int64), up=5)
    np.testing.assert_allclose(found, true, atol=0.1 + 1e-9)


def test_subsample_peaks_weigh_each_point_like_its_own_lanczos_weights():
    rng = np.random.default_rng(5)
    trace = rng.standard_normal((2, 300))
    pos, rec = np.array([20, 131, 250, 40]), np.array([0, 0, 0, 1])
    offsets = np.arange(-5, 6) / 5
    t = pos[:, None] + offsets
    i0 = np.floor(t).astype(np.int64)
    w = lanczos_weights(t - i0)  # (peaks, points, taps), one point at a time
    idx = np.clip(i0[..., None] + np.arange(-5, 7), 0, 299)
    vals = np.einsum("pst,pst->ps", trace[rec[:, None, None], idx], w)
    np.testing.assert_array_equal(subsample_peaks(trace, pos, rec, up=5), pos + offsets[np.argmax(vals, axis=1)])


def test_settings_default_to_subsample_and_old_dicts_to_the_grid():
    assert BeatSettings().subsample is True
    old = {k: v for k, v in BeatSettings().to_dict().items() if k != "subsample"}
    assert BeatSettings.from_dict(old).subsample is False
    assert BeatSettings.from_dict(BeatSettings().to_dict()) == BeatSettings()


@pytest.mark.parametrize("kwargs", [{}, {"rr_jitter": 0.08, "noise": 0.02, "baseline_wander": 0.3},
                                    {"heart_rate": 45, "axis_deg": 120, "qrs_ms": 130}])
def test_subsample_beats_match_the_whole_record_path_and_the_true_r_peaks(kwargs):
    truth, info = ecg_simulate(10.0, 500, seed=3, **kwargs)
    x = resample_signal(truth, 500, 100)
    sub, sub_info = ecg_medianbeat(x, 100, align_rate=500, out_rate=100, subsample=True)
    grid, grid_info = ecg_medianbeat(x, 100, align_rate=500, out_rate=100)
    assert sub.shape == grid.shape == (12, 120) and sub_info["r_index"] == grid_info["r_index"] == 40
    assert sub_info["record_sampling_rate"] == 500 and sub_info["sampling_rate"] == 100
    found, true = sub_info["r_peaks"], info["r_peaks"][(info["r_peaks"] > 50) & (info["r_peaks"] < 4950)]
    assert np.abs(found[:, None] - true[None, :]).min(axis=0).max() <= 2  # within 4 ms of every true R
    assert np.abs(sub - grid).mean() * 1e3 < 10.0  # uV
    assert sub_info["beats"].shape[1:] == (12, 120)
    beat, _ = ecg_factorbeat(x, 100)  # the default settings take this path
    np.testing.assert_allclose(beat, sub, atol=1e-6)


def test_pick_beats_spreads_and_cycles():
    from ecglens.models.factorecg.data import pick_beats

    beats = np.arange(10)[:, None, None] * np.ones((1, 12, 4))
    assert pick_beats(beats, 4)[:, 0, 0].tolist() == [0, 3, 6, 9]
    assert pick_beats(beats[:3], 5)[:, 0, 0].tolist() == [0, 1, 2, 0, 1]


def test_factorbeat_batch_keeps_individual_beats_levelled_like_the_median():
    from ecglens.models.factorecg.data import ecg_factorbeat_batch

    truth, _ = ecg_simulate(10.0, 500, seed=5, noise=0.01)
    x = resample_signal(truth, 500, 100)[None]
    beats, infos = ecg_factorbeat_batch(x, 100, keep_beats=True)
    kept = infos[0]["beats"]
    assert kept.shape == (infos[0]["beats_kept"], 12, 120)
    np.testing.assert_allclose(np.median(kept, axis=0), beats[0], atol=0.02)  # the median of what was kept
