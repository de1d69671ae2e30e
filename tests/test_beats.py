"""R peaks and the median beat: synthetic records with known answers, bundled real records, the CLI."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from ecglens.beats import ecg_findpeaks, ecg_medianbeat, ecg_simulate, median_beat, resample_beat
from ecglens.beats import rpeaks
from ecglens.errors import ECGError
from ecglens.io import ECG
from ecglens.io.leads import STANDARD_LEADS
from ecglens.samples import list_samples, load_sample, sample_path

RATES = [100, 250, 500, 1000]
EDGE_S = 0.1  # R peaks this close to the record ends may be cut and are not scored


def _match(found: np.ndarray, true: np.ndarray, fs: float, n: int) -> tuple[int, int, int]:
    """(missed true peaks, extra detections, worst error in samples) away from the record edges."""
    tol = max(2, int(round(0.01 * fs)))
    edge = int(EDGE_S * fs)
    t = true[(true >= edge) & (true < n - edge)]
    f = found[(found >= edge) & (found < n - edge)]
    d = np.abs(f[:, None] - t[None, :])
    missed = int(np.sum(d.min(axis=0) > tol)) if len(f) else len(t)
    extra = int(np.sum(d.min(axis=1) > tol)) if len(t) else len(f)
    return missed, extra, int(d.min(axis=0).max()) if len(f) and len(t) else -1


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("kwargs", [
    {},
    {"rr_jitter": 0.08, "noise": 0.03, "baseline_wander": 0.3, "axis_deg": -30},
    {"heart_rate": 140, "qt_ms": 300, "noise": 0.02},
    {"heart_rate": 45, "axis_deg": 120, "qrs_ms": 130},
])
def test_findpeaks_finds_every_true_r(fs, kwargs):
    x, info = ecg_simulate(10.0, fs, seed=fs, **kwargs)
    peaks, pinfo = ecg_findpeaks(x, fs)
    missed, extra, worst = _match(peaks, info["r_peaks"], fs, x.shape[1])
    assert (missed, extra) == (0, 0)
    if not kwargs:
        assert worst == 0  # clean record: exactly on the R sample
    assert pinfo["method"] in ("neurokit", "fallback")
    assert peaks.dtype == np.int64 and np.all(np.diff(peaks) > 0)


@pytest.mark.parametrize("fs", [100, 500])
def test_fallback_detector_when_the_neurokit_rule_finds_nothing(fs, monkeypatch):
    monkeypatch.setattr(rpeaks, "_neurokit", lambda energy, fs: (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    x, info = ecg_simulate(10.0, fs, seed=7, rr_jitter=0.05, noise=0.02)
    peaks, pinfo = ecg_findpeaks(x, fs)
    assert pinfo["method"] == "fallback" and pinfo["fallback_reason"] == "no peaks"
    assert _match(peaks, info["r_peaks"], fs, x.shape[1])[:2] == (0, 0)


def test_implausible_neurokit_answer_triggers_fallback(monkeypatch):
    x, info = ecg_simulate(10.0, 500, seed=1)
    every_other = info["r_peaks"][::2]
    monkeypatch.setattr(rpeaks, "_neurokit", lambda energy, fs: (every_other, np.zeros(len(every_other), np.int64)))
    peaks, pinfo = ecg_findpeaks(x, 500)
    assert pinfo["method"] == "fallback" and "without a detection" in pinfo["fallback_reason"]
    assert _match(peaks, info["r_peaks"], 500, x.shape[1])[:2] == (0, 0)


def test_findpeaks_refines_on_a_negative_dominant_lead():
    x, info = ecg_simulate(10.0, 500, seed=2)
    peaks, pinfo = ecg_findpeaks(-x, 500)  # every lead inverted: the R peak is now a minimum
    assert pinfo["polarity"] == -1
    assert _match(peaks, info["r_peaks"], 500, x.shape[1]) == (0, 0, 0)


@pytest.mark.parametrize("fs", RATES)
def test_median_of_clean_record_is_the_template_beat(fs):
    x, info = ecg_simulate(10.0, fs, heart_rate=60)  # RR = 1 s: every beat window holds the same samples
    median, minfo = ecg_medianbeat(x, fs, source="synthetic")
    nb = minfo["r_index"]
    assert nb == round(0.4 * fs) and median.shape == (12, round(1.2 * fs)) and median.dtype == np.float32
    r = info["r_peaks"][3]
    np.testing.assert_allclose(median, x[:, r - nb:r - nb + median.shape[1]], atol=1e-5)
    assert minfo["beats_found"] == len(info["r_peaks"])
    assert minfo["beats_kept"] + len(minfo["rejected"]) == minfo["beats_found"]
    assert all(d["reason"].startswith("window") for d in minfo["rejected"])
    assert minfo["heart_rate"] == pytest.approx(60, abs=0.5)
    assert minfo["beats"].shape == (minfo["beats_kept"], 12, median.shape[1])
    np.testing.assert_allclose(minfo["beats"], np.broadcast_to(median, minfo["beats"].shape), atol=1e-4)
    np.testing.assert_allclose(minfo["rr"], 1.0, atol=1.0 / fs)


@pytest.mark.parametrize("fs", [100, 500])
def test_ectopic_beat_is_rejected_with_a_reason(fs):
    x, info = ecg_simulate(10.0, fs, heart_rate=60, ectopic_at=(4,))
    clean, _ = ecg_simulate(10.0, fs, heart_rate=60)
    median, minfo = ecg_medianbeat(x, fs, source="pvc")
    reasons = {d["index"]: d["reason"] for d in minfo["rejected"]}
    assert "ectopic" in reasons[4]
    assert 4 not in minfo["kept"] and 3 in minfo["kept"] and 5 in minfo["kept"]
    assert sum(1 for why in reasons.values() if not why.startswith("window")) == 1
    r, nb = info["r_peaks"][2], minfo["r_index"]
    core = slice(nb - int(0.3 * fs), nb + int(0.5 * fs))
    np.testing.assert_allclose(median[:, core], clean[:, r - nb:r - nb + median.shape[1]][:, core], atol=0.01)


def test_median_with_noise_jitter_and_wander_is_close_to_the_clean_beat():
    fs = 500
    noisy, info = ecg_simulate(20.0, fs, heart_rate=75, seed=5, noise=0.03, baseline_wander=0.3, rr_jitter=0.03)
    clean, _ = ecg_simulate(20.0, fs, heart_rate=75)
    median, minfo = ecg_medianbeat(noisy, fs)
    nb = round(0.4 * fs)
    core = slice(nb - int(0.3 * fs), nb + int(0.45 * fs))  # before the next beat, whose timing jitters
    r = 2 * round(0.8 * fs) + round(0.48 * fs)
    ref = clean[:, r - nb:r - nb + median.shape[1]]
    assert minfo["beats_kept"] >= 20
    assert np.sqrt(np.mean((median[:, core] - ref[:, core]) ** 2)) < 0.02


def test_too_few_beats_raise_naming_the_record():
    x, _ = ecg_simulate(2.0, 500)
    with pytest.raises(ECGError, match=r"^short-record: only \d usable beat"):
        ecg_medianbeat(x, 500, source="short-record")
    with pytest.raises(ECGError, match="need 3"):
        median_beat(ECG(x, 500, STANDARD_LEADS, source="rec.hea"))


@pytest.mark.parametrize("signal", [np.zeros((12, 5000)), np.full((12, 5000), 0.7), np.zeros((12, 0))])
def test_flat_or_empty_record_raises(signal):
    with pytest.raises(ECGError, match=r"^flat\.npy: (flat record|expected a non-empty)"):
        ecg_medianbeat(signal, 500, source="flat.npy")


def test_non_finite_and_no_peaks_raise():
    x, _ = ecg_simulate(10.0, 500)
    x[3, 100] = np.nan
    with pytest.raises(ECGError, match="NaN"):
        ecg_medianbeat(x, 500, source="nan")
    hum = 0.5 * np.sin(2 * np.pi * 0.3 * np.arange(5000) / 500)[None, :].repeat(12, axis=0)  # slow drift only
    with pytest.raises(ECGError, match="drift"):
        ecg_medianbeat(hum, 500, source="drift")


def test_out_rate_resamples_the_beat():
    fs = 500
    x, _ = ecg_simulate(10.0, fs, heart_rate=60)
    median, info = ecg_medianbeat(x, fs)
    low, low_info = ecg_medianbeat(x, fs, out_rate=100)
    assert low.shape == (12, 120) and low_info["r_index"] == 40 and low_info["sampling_rate"] == 100
    assert low_info["beats"].shape[1:] == (12, 120)
    np.testing.assert_allclose(low, resample_beat(median, fs, 100), atol=1e-6)
    # Back up to 500 Hz the slow waves survive; the R peak stays at the R sample.
    back = resample_beat(low, 100, fs)
    assert back.shape == median.shape
    assert int(np.argmax(back[STANDARD_LEADS.index("V5")])) == info["r_index"]
    t_wave = slice(info["r_index"] + 100, info["r_index"] + 200)
    np.testing.assert_allclose(back[:, t_wave], median[:, t_wave], atol=0.01)


def test_given_r_peaks_are_used():
    x, info = ecg_simulate(10.0, 250, heart_rate=60)
    median, minfo = ecg_medianbeat(x, 250, r_peaks=info["r_peaks"])
    assert minfo["method"] == "given" and np.array_equal(minfo["r_peaks"], info["r_peaks"])
    with pytest.raises(ECGError, match="outside the record"):
        ecg_medianbeat(x, 250, r_peaks=[10, 5000])


BOTH_RATES = [s.ecg_id for s in list_samples() if 500 in s.rates]


@pytest.mark.parametrize("ecg_id", BOTH_RATES)
def test_bundled_records_at_100_and_500_hz(ecg_id):
    beats = {}
    for fs in (100, 500):
        ecg = load_sample(ecg_id, fs)
        median, info = median_beat(ecg)
        assert median.shape == (12, int(1.2 * fs)) and info["r_index"] == int(0.4 * fs)
        assert info["beats_kept"] >= 3
        assert 40 <= info["heart_rate"] <= 180
        assert info["leads"] == STANDARD_LEADS and info["source"] == ecg.source
        assert np.abs(median).max() > 0.2  # a real QRS, not a zero beat
        beats[fs] = (median, info)
    assert beats[100][1]["heart_rate"] == pytest.approx(beats[500][1]["heart_rate"], abs=3)
    # The two medians are one beat: the 500-Hz one, taken to 100 Hz, matches the 100-Hz one.
    down = resample_beat(beats[500][0], 500, 100)
    corr = np.corrcoef(down.ravel(), beats[100][0].ravel())[0, 1]
    assert corr > 0.9


def _cli(argv: list[str]) -> int:
    from ecglens.cli import beat

    parser = argparse.ArgumentParser(prog="ecglens")
    sub = parser.add_subparsers(dest="command", required=True)
    beat.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_text_json_and_figure(tmp_path, capsys):
    record = str(sample_path(219, 500))
    figure = tmp_path / "beat.png"
    assert _cli(["beat", record, "-o", str(figure)]) == 0
    text = capsys.readouterr().out
    assert "beats      found" in text and "ectopic" in text and "QRS" in text and str(figure) in text
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert _cli(["beat", record, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    q, m = report["quality"], report["measurements"]
    assert q["beats_kept"] >= 3 and q["beats_found"] == q["beats_kept"] + len(q["rejected"])
    assert 40 < q["heart_rate_bpm"] < 150 and 60 < m["qrs_duration_ms"] < 200
    assert set(m["r_amplitude_mv"]) == set(STANDARD_LEADS)


def test_cli_rateless_file_needs_rate(tmp_path, capsys):
    x, info = ecg_simulate(10.0, 250, heart_rate=60, qrs_ms=100)
    path = tmp_path / "synthetic.npy"
    np.save(path, x)
    with pytest.raises(ECGError, match="--rate"):
        _cli(["beat", str(path)])
    assert _cli(["beat", str(path), "--rate", "250", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quality"]["heart_rate_bpm"] == pytest.approx(60, abs=0.5)
    assert report["measurements"]["qrs_duration_ms"] == pytest.approx(100, abs=14)
    with pytest.raises(ECGError, match="figure type"):
        _cli(["beat", str(path), "--rate", "250", "-o", str(tmp_path / "beat.txt")])
