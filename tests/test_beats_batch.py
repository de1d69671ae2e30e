"""Batch R peaks and median beats: equal to one record at a time, to straightforward references, to known R peaks."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ecglens.beats import ecg_findpeaks, ecg_findpeaks_batch, ecg_medianbeat, ecg_medianbeat_batch, ecg_simulate
from ecglens.beats import median as median_module
from ecglens.beats import rpeaks
from ecglens.errors import ECGError
from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat, ecg_factorbeat_batch
from ecglens.preprocess import resample_signal
from ecglens.samples import load_sample

SIMULATED = [
    {},
    {"rr_jitter": 0.08, "noise": 0.03, "baseline_wander": 0.3, "axis_deg": -30},
    {"heart_rate": 140, "qt_ms": 300, "noise": 0.02},
    {"heart_rate": 45, "axis_deg": 120, "qrs_ms": 130},
    {"heart_rate": 60, "ectopic_at": (4,)},
]


def _records(fs: float, seconds: float = 10.0) -> np.ndarray:
    return np.stack([ecg_simulate(seconds, fs, seed=k, **kw)[0] for k, kw in enumerate(SIMULATED)])


def _neurokit_reference(energy: np.ndarray, fs: float) -> np.ndarray:
    """neurokit2 0.3's ``_ecg_findpeaks_neurokit`` written out run by run, on the 0.5-s edge-padded energy."""
    from scipy import ndimage
    from scipy.signal import find_peaks

    sr = int(round(fs))
    pad = int(round(0.5 * fs))
    e = np.pad(energy, pad, mode="edge")
    smooth = ndimage.uniform_filter1d(np.abs(np.gradient(e)), int(np.rint(0.1 * sr)), mode="nearest")
    qrs = smooth > 1.5 * ndimage.uniform_filter1d(smooth, int(np.rint(0.75 * sr)), mode="nearest")
    beg = np.where(~qrs[:-1] & qrs[1:])[0]
    end = np.where(qrs[:-1] & ~qrs[1:])[0]
    if not len(beg):
        return np.zeros(0, np.int64)
    end = end[end > beg[0]]
    n = min(len(beg), len(end))
    min_len = np.mean(end[:n] - beg[:n]) * 0.4
    peaks = [0]
    for b, f in zip(beg[:n], end[:n]):
        if f - b < min_len:
            continue
        loc, props = find_peaks(e[b:f], prominence=(None, None))
        if len(loc):
            p = b + loc[np.argmax(props["prominences"])]
            if p - peaks[-1] > int(np.rint(sr * 0.3)):
                peaks.append(p)
    out = np.asarray(peaks[1:], dtype=np.int64) - pad
    return out[(out >= 0) & (out < len(energy))]


@pytest.mark.parametrize("fs", [100, 250, 500])
def test_vectorised_neurokit_rule_equals_the_run_by_run_reference(fs):
    x = np.concatenate([_records(fs), load_sample(172, 100).signal[None]]) if fs == 100 else _records(fs)
    energy = rpeaks.ecg_energy(x - np.median(x, axis=-1, keepdims=True), fs)
    pos, rec = rpeaks._neurokit(energy, fs)
    for i, row in enumerate(energy):
        want = _neurokit_reference(row, fs)
        assert len(want) >= 5
        np.testing.assert_array_equal(pos[rec == i], want)


def test_vectorised_neurokit_rule_equals_neurokit2():
    nk = pytest.importorskip("neurokit2")
    fs = 500
    x = _records(fs)
    energy = rpeaks.ecg_energy(x, fs)
    pos, rec = rpeaks._neurokit(energy, fs)
    pad = int(0.5 * fs)
    for i, row in enumerate(energy):
        found = np.asarray(nk.ecg_findpeaks(np.pad(row, pad, mode="edge"), sampling_rate=fs)["ECG_R_Peaks"]) - pad
        np.testing.assert_array_equal(pos[rec == i], found[(found >= 0) & (found < len(row))])


def test_findpeaks_batch_equals_one_record_at_a_time_and_names_bad_records():
    fs = 250
    x = _records(fs)
    x = np.concatenate([x, np.zeros_like(x[:1]), x[:1]])
    x[-1, 3, 100] = np.nan
    sources = [f"rec{i}" for i in range(len(x))]
    out = ecg_findpeaks_batch(x, fs, sources=sources)
    for i, got in enumerate(out[:len(SIMULATED)]):
        peaks, info = ecg_findpeaks(x[i], fs)
        np.testing.assert_array_equal(got[0], peaks)
        assert got[1] == info
    assert isinstance(out[-2], ECGError) and str(out[-2]) == "rec5: no R peaks detected"
    assert isinstance(out[-1], ECGError) and str(out[-1]) == "rec6: signal contains NaN or infinite values"
    with pytest.raises(ECGError, match="record too short"):
        ecg_findpeaks(x[0, :, :100], fs)


@pytest.mark.parametrize("fs", [100, 500])
def test_medianbeat_batch_equals_one_record_at_a_time(fs):
    x = _records(fs)
    x = np.concatenate([x, np.full_like(x[:1], 0.3)])  # a flat record
    sources = [f"rec{i}" for i in range(len(x))]
    medians, infos = ecg_medianbeat_batch(x, fs, sources=sources, keep_beats=True)
    assert medians.shape == (len(x), 12, round(1.2 * fs)) and medians.dtype == np.float32
    for i in range(len(SIMULATED)):
        median, info = ecg_medianbeat(x[i], fs, source=sources[i])
        np.testing.assert_array_equal(medians[i], median)
        for key in ("r_peaks", "rr", "beats"):
            np.testing.assert_array_equal(infos[i][key], info[key])
        assert {k: v for k, v in infos[i].items() if k not in ("r_peaks", "rr", "beats")} == \
               {k: v for k, v in info.items() if k not in ("r_peaks", "rr", "beats")}
    assert "ectopic" in " ".join(d["reason"] for d in infos[4]["rejected"])
    assert np.isnan(medians[-1]).all() and isinstance(infos[-1], ECGError)
    assert str(infos[-1]).startswith("rec5: flat record")


def test_group_median_equals_numpy_median_per_group():
    rng = np.random.default_rng(0)
    counts = np.array([1, 2, 5, 0, 6, 5])
    groups = np.repeat(np.arange(len(counts)), counts)
    values = rng.standard_normal((len(groups), 3, 4))
    got = rpeaks.group_median(values, groups, len(counts))
    for g, c in enumerate(counts):
        if c:
            np.testing.assert_array_equal(got[g], np.median(values[groups == g], axis=0))
        else:
            assert np.isnan(got[g]).all()


def test_sort_based_median_and_percentile_equal_numpy_bit_for_bit():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 1000):
        x = np.round(rng.standard_normal((3, 12, n)), 3)  # rounded: ties, as in quantised records
        np.testing.assert_array_equal(rpeaks.median_last(x), np.median(x, axis=-1))
        x32 = x.astype(np.float32)
        np.testing.assert_array_equal(rpeaks.median_last(x32), np.median(x32, axis=-1))
        assert rpeaks.median_last(x32).dtype == np.float32
        np.testing.assert_array_equal(rpeaks.median_last(x32, np.float64), np.median(x32.astype(np.float64), axis=-1))
        for q in (10.0, 50.0, 75.0, 98.0, 99.5):
            np.testing.assert_array_equal(rpeaks.percentile_last(np.abs(x), q), np.percentile(np.abs(x), q, axis=-1))


def test_split_by_record_gives_each_records_rows():
    rec = np.array([0, 0, 2, 2, 2, 4])
    parts = rpeaks.split_by_record(np.arange(6) * 10, rec, 6)
    assert [p.tolist() for p in parts] == [[0, 10], [], [20, 30, 40], [], [50], []]


def test_flattest_start_is_the_least_summed_peak_to_peak():
    from ecglens.beats.measure import flattest_start

    rng = np.random.default_rng(2)
    region = rng.standard_normal((4, 12, 40))
    region[1, :, 10:15] = 0.5  # one flat stretch
    for width in (2, 5, 11):
        windows = np.lib.stride_tricks.sliding_window_view(region, width, axis=-1)
        expected = np.argmin(np.ptp(windows, axis=-1).sum(axis=-2), axis=-1)
        np.testing.assert_array_equal(flattest_start(region, width), expected)
    assert flattest_start(region, 5)[1] == 10


@pytest.mark.parametrize("rate, out_rate, stop", [(100.0, 500.0, 181), (100.0, 500.0, 11), (250.0, 500.0, 131),
                                                  (100.0, 500.0, 600)])
def test_resample_head_equals_the_whole_beat_resampled(rate, out_rate, stop):
    x = np.random.default_rng(3).standard_normal((5, 12, int(1.2 * rate)))
    whole = median_module.resample_beat(x, rate, out_rate)
    np.testing.assert_array_equal(median_module.resample_head(x, rate, out_rate, stop), whole[..., :stop])


def test_cut_shifted_in_blocks_equals_one_pass():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 12, 500))
    n = 2 * median_module.CUT_BLOCK + 5
    rec = np.sort(rng.integers(0, 3, n))
    start = rng.uniform(-3.0, 390.0, n)
    got = median_module.cut_shifted(x, rec, start, 120)
    # one pass over all beats, tap by tap in float32 as the blocks do
    taps, a = median_module.SUBSAMPLE_TAPS, median_module.SUBSAMPLE_TAPS // 2
    i0 = np.floor(start).astype(np.int64)
    w = median_module.lanczos_weights(start - i0).astype(np.float32)
    xp = np.pad(x.astype(np.float32), [(0, 0), (0, 0), (20, 20)], mode="edge")
    idx = (i0 - a + 1 + 20)[:, None] + np.arange(120 + taps - 1)
    win = np.stack([xp[r][:, i] for r, i in zip(rec, idx)])
    ref = win[..., :120] * w[:, 0, None, None]
    for k in range(1, taps):
        ref += win[..., k:k + 120] * w[:, k, None, None]
    np.testing.assert_array_equal(got, ref)


def test_baseline_spline_matches_scipy_per_record():
    from scipy.interpolate import CubicSpline

    rng = np.random.default_rng(1)
    knots = [np.array([40.5]), np.array([10.5, 90.5, 170.5]), np.sort(rng.uniform(0, 400, 7)) + 0.5]
    levels = [rng.standard_normal((len(k), 2)) for k in knots]
    rec = np.repeat(np.arange(3), [len(k) for k in knots])
    at = np.arange(0, 400, 7.0)
    at_rec = np.repeat(np.arange(3), len(at))
    got = median_module._baseline(np.concatenate(knots), np.concatenate(levels), rec, 3, np.tile(at, 3), at_rec)
    got = got.reshape(3, len(at), 2)
    np.testing.assert_allclose(got[0], np.broadcast_to(levels[0][0], (len(at), 2)), atol=1e-12)
    t1 = np.clip(at, knots[1][0], knots[1][-1])
    np.testing.assert_allclose(got[1], np.stack([np.interp(t1, knots[1], lv) for lv in levels[1].T], axis=1),
                               atol=1e-12)
    t2 = np.clip(at, knots[2][0], knots[2][-1])
    np.testing.assert_allclose(got[2], CubicSpline(knots[2], levels[2], bc_type="natural")(t2), atol=1e-12)


@pytest.mark.parametrize("kwargs", SIMULATED)
def test_fine_grid_beats_equal_those_of_the_resampled_record_and_the_true_r_peaks(kwargs):
    truth, info = ecg_simulate(10.0, 500, seed=3, **kwargs)
    x = resample_signal(truth, 500, 100)
    fine, fine_info = ecg_medianbeat(x, 100, align_rate=500, out_rate=100)
    full, full_info = ecg_medianbeat(resample_signal(x, 100, 500), 500, out_rate=100)
    np.testing.assert_array_equal(fine_info["r_peaks"], full_info["r_peaks"])
    assert fine_info["kept"] == full_info["kept"] and fine_info["record_sampling_rate"] == 500
    np.testing.assert_allclose(fine, full, atol=1e-6)
    found = fine_info["r_peaks"]
    true = info["r_peaks"][(info["r_peaks"] > 50) & (info["r_peaks"] < 4950)]
    assert np.abs(found[:, None] - true[None, :]).min(axis=0).max() <= 1  # within 2 ms of every true R


def test_factorbeat_batch_equals_one_record_at_a_time():
    ecgs = [load_sample(i, 100) for i in (172, 219, 504)]
    x = np.stack([e.signal for e in ecgs])
    beats, infos = ecg_factorbeat_batch(x, 100, sources=["a", "b", "c"])
    settings = BeatSettings()
    assert beats.shape == (3, 12, settings.beat_samples)
    for i in range(3):
        beat, info = ecg_factorbeat(x[i], 100, source="abc"[i])
        np.testing.assert_array_equal(beats[i], beat)
        assert infos[i]["kept"] == info["kept"] and infos[i]["r_index"] == settings.r_index
    with pytest.raises(ECGError, match="12, samples"):
        ecg_factorbeat_batch(x[:, :11], 100)


def test_beats_import_neither_neurokit2_nor_scipy():
    code = ("import sys, ecglens.beats, ecglens.models.factorecg.data; "
            "print(sorted(m for m in ('neurokit2', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
