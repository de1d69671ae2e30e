"""Preprocessing: resampling keeps a sine, filters are zero-phase, the pipeline serialises."""
import json

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io.record import ECG
from ecglens.io.leads import STANDARD_LEADS
from ecglens.preprocess import (Bandpass, FixLength, Highpass, Pipeline, Resample, Scale, Standardize,
                                resample_signal)


def sine(freq, rate, seconds=10.0, amp=1.0):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant(x, rate):
    spec = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)], 2 * spec.max() / len(x)


@pytest.mark.parametrize("src,dst", [(500, 100), (100, 500), (360, 100), (1000, 250), (257, 100)])
def test_resampling_keeps_a_sines_amplitude_and_frequency(src, dst):
    x = np.stack([sine(5.0, src, amp=1.5)] * 2)
    y = resample_signal(x, src, dst)
    assert y.shape == (2, int(round(10 * dst)))
    freq, amp = dominant(y[0, 100:-100] if dst >= 250 else y[0], dst)
    assert abs(freq - 5.0) < 0.15
    core = y[0, len(y[0]) // 10: -len(y[0]) // 10]
    assert abs(np.abs(core).max() - 1.5) < 0.03


def test_downsampling_removes_content_above_the_new_nyquist():
    # 70 Hz at 500 Hz would alias to 30 Hz at 100 Hz without the anti-aliasing filter.
    x = sine(70.0, 500)[None]
    y = resample_signal(x, 500, 100)
    assert np.abs(y[0, 50:-50]).max() < 0.05


def test_bandpass_is_zero_phase_and_removes_drift():
    rate = 100
    wave = sine(5.0, rate)
    drift = 2.0 * np.sin(2 * np.pi * 0.05 * np.arange(wave.size) / rate).astype(np.float32)
    y, r = Bandpass(0.5, 40.0).apply(np.stack([wave + drift]), rate)
    assert r == rate
    core = slice(300, -300)
    assert np.abs(y[0, core] - wave[core]).max() < 0.05  # no phase shift, drift gone
    h, _ = Highpass(0.5).apply(np.stack([wave + 3.0]), rate)
    assert abs(h[0, core].mean()) < 0.02


def test_filter_cutoff_outside_the_band_is_an_error():
    with pytest.raises(ECGError, match="cutoff"):
        Highpass(80.0).apply(np.zeros((1, 1000), np.float32) + 1, 100)


def test_standardize_and_scale():
    x = np.stack([np.arange(10, dtype=np.float32), np.full(10, 3.0, np.float32)])
    y, _ = Standardize().apply(x, 100)
    assert np.allclose(y[0].mean(), 0, atol=1e-6) and np.allclose(y[0].std(), 1, atol=1e-5)
    assert np.all(y[1] == 0)  # a flat lead stays at zero instead of dividing by zero
    scale = Scale.fit([x, x + 1])
    assert np.allclose(scale.mean, [5.0, 3.5])
    assert np.allclose(scale.std[0], np.concatenate([x[0], x[0] + 1]).std())
    z, _ = scale.apply(x, 100)
    assert np.allclose(z[1], (3.0 - 3.5) / scale.std[1])


@pytest.mark.parametrize("n,align,expect_first", [(1200, "start", 0), (1200, "center", 100), (800, "center", None)])
def test_fix_length(n, align, expect_first):
    x = np.arange(n, dtype=np.float32)[None]
    y, _ = FixLength(10.0, align=align).apply(x, 100)
    assert y.shape == (1, 1000)
    if expect_first is not None:
        assert y[0, 0] == expect_first
    else:
        assert y[0, 99] == 0 and y[0, 101] == 1 and y[0, 899] == 799 and y[0, 900] == 0


def test_pipeline_round_trip_and_fingerprint():
    pipe = Pipeline((Resample(100), Bandpass(0.5, 40.0), Scale((0.0,) * 12, (1.0,) * 12), FixLength(10.0)))
    d = json.loads(json.dumps(pipe.to_dict()))
    again = Pipeline.from_dict(d)
    assert again == pipe and again.fingerprint() == pipe.fingerprint()
    assert Pipeline((Resample(100), Bandpass(0.5, 45.0))).fingerprint() != Pipeline((Resample(100), Bandpass(0.5, 40.0))).fingerprint()
    assert pipe.output_rate == 100.0
    with pytest.raises(ECGError, match="unknown preprocessing step"):
        Pipeline.from_dict({"steps": [{"step": "magic"}]})


def test_pipeline_adapts_any_rate_to_the_model_input():
    pipe = Pipeline((Resample(100), Bandpass(0.5, 40.0), Standardize(), FixLength(10.0)))
    for rate, seconds in [(500, 10), (257, 12.5), (1000, 7)]:
        ecg = ECG(np.stack([sine(1.2, rate, seconds)] * 12), rate, STANDARD_LEADS, source="sim")
        out = pipe.apply(ecg)
        assert out.signal.shape == (12, 1000) and out.sampling_rate == 100.0 and out.units == "a.u."


def test_filter_design_is_cached_and_the_cache_cannot_be_altered():
    from ecglens.preprocess.pipeline import _butter_sos, _designed_sos

    x = np.random.default_rng(0).standard_normal((12, 1000)).astype(np.float32)
    first, _ = Bandpass(0.5, 40.0).apply(x, 100.0)
    hits = _designed_sos.cache_info().hits
    sos = _butter_sos("bandpass", (0.5, 40.0), 100.0, 2)
    sos[:] = 0.0  # a caller's copy: the cached design is untouched
    again, _ = Bandpass(0.5, 40.0).apply(x, 100.0)
    assert _designed_sos.cache_info().hits >= hits + 2
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("step,rate", [
    (Resample(100), 500.0), (Resample(500), 100.0), (Highpass(0.5), 100.0), (Bandpass(0.5, 40.0), 100.0),
    (Standardize(), 100.0), (Scale(tuple(range(12)), tuple(range(1, 13))), 100.0),
    (FixLength(8.0, "center"), 100.0), (FixLength(12.0), 100.0)])
def test_a_stack_of_records_gets_what_each_record_gets(step, rate):
    x = np.random.default_rng(0).standard_normal((5, 12, int(10 * rate))).astype(np.float32)
    stacked, out_rate = step.apply(x, rate)
    assert stacked.dtype == np.float32 and stacked.shape[0] == 5
    for i in range(5):
        one, one_rate = step.apply(x[i], rate)
        assert one_rate == out_rate
        np.testing.assert_allclose(stacked[i], one, rtol=0, atol=1e-6)


def test_apply_many_batches_by_rate_and_length_and_keeps_the_order():
    pipe = Pipeline((Resample(100), Bandpass(0.5, 40.0), Standardize(), FixLength(10.0)))
    rng = np.random.default_rng(1)
    specs = [(500, 10), (100, 10), (500, 10), (250, 7), (100, 10)]
    signals = [rng.standard_normal((12, int(rate * seconds))).astype(np.float32) for rate, seconds in specs]
    rates = [float(rate) for rate, _ in specs]
    outs = pipe.apply_many(signals, rates)
    assert len(outs) == len(signals)
    for (x, rate), signal, source_rate in zip(outs, signals, rates):
        want, want_rate = pipe.apply_signal(signal, source_rate)
        assert rate == want_rate == 100.0 and x.shape == (12, 1000)
        np.testing.assert_allclose(x, want, rtol=0, atol=1e-6)
    assert pipe.apply_many([], []) == []


@pytest.mark.parametrize("shape, padlen", [((3, 12, 1000), 15), ((200, 12, 1000), 15), ((2, 12, 5000), 15),
                                           ((12, 1), 0), ((4, 7), 6)])
def test_sosfiltfilt_last_equals_scipy_bit_for_bit(shape, padlen):
    from scipy import signal as sps

    from ecglens.preprocess.pipeline import sosfiltfilt_last

    sos = sps.butter(2, (0.5, 40.0), btype="bandpass", fs=100, output="sos")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref = sps.sosfiltfilt(sos, x.astype(np.float64), axis=-1, padlen=padlen)
    got = sosfiltfilt_last(sos, x, padlen)  # 200 x 12 rows: filtered in several blocks
    assert got.dtype == np.float64 and got.shape == x.shape
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(sosfiltfilt_last(sos, x, padlen, np.float32), ref.astype(np.float32))
    with pytest.raises(ValueError):
        sosfiltfilt_last(sos, x, shape[-1])


def test_scale_and_standardize_keep_the_float32_arithmetic():
    x = np.random.default_rng(1).standard_normal((5, 12, 300)).astype(np.float32)
    scale = Scale(tuple(np.linspace(-0.1, 0.1, 12)), tuple(np.linspace(0.1, 0.4, 12)))
    mean, std = (np.asarray(v, dtype=np.float32)[:, None] for v in (scale.mean, scale.std))
    got, _ = scale.apply(x, 100.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ((x - mean) / std).astype(np.float32))
    got, _ = Standardize().apply(x, 100.0)
    m, s = x.mean(axis=-1, keepdims=True), x.std(axis=-1, keepdims=True)
    np.testing.assert_array_equal(got, ((x - m) / np.maximum(s, 1e-6)).astype(np.float32))
    got64, _ = scale.apply(x.astype(np.float64), 100.0)  # a float64 input: computed in float64, then cast
    np.testing.assert_array_equal(got64, ((x.astype(np.float64) - mean) / std).astype(np.float32))
