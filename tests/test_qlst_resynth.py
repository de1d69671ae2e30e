"""Re-synthesis of records from a median beat, the torch pipeline and the record-classifier adapter."""
import numpy as np
import pytest
import torch
from torch import nn

from ecglens.beats import ecg_medianbeat, ecg_simulate
from ecglens.errors import ECGError
from ecglens.io.leads import STANDARD_LEADS
from ecglens.io.record import ECG
from ecglens.models.classifier import Classifier
from ecglens.models.qlst import (
    RecordClassifierAdapter,
    RecordContext,
    TorchPipeline,
    regular_peaks,
    resynthesis_fidelity,
    resynthesis_weights,
    resynthesize,
)
from ecglens.preprocess import (
    Bandpass,
    FixLength,
    Highpass,
    Pipeline,
    Resample,
    Scale,
    Standardize,
)


def spike_beat(m=20, r_index=6):
    beat = torch.zeros(12, m)
    beat[:, r_index] = torch.arange(1, 13, dtype=torch.float32)
    return beat


def test_beats_land_exactly_on_the_r_peaks():
    peaks = np.array([15, 37, 60, 83])
    rec = resynthesize(spike_beat(), peaks, 100, 6)
    assert rec.shape == (12, 100)
    lead = rec[3].numpy()
    assert set(np.flatnonzero(lead)) == set(peaks)
    assert np.allclose(lead[peaks], 4.0)


def test_weights_partition_unity_where_covered():
    peaks = np.array([20, 45, 70])
    w, j = resynthesis_weights(peaks, 100, beat_samples=30, r_index=10)
    total = w.sum(axis=0)
    covered = total > 0
    assert np.allclose(total[covered], 1.0)
    # the virtual beats extend coverage to the edges (median RR 25 before 20 and after 70)
    assert covered[0] and covered[-1]
    # at an R peak the own beat has all the weight
    k = 1 + 1  # +1 for the virtual beat before
    assert w[k, 45] == pytest.approx(1.0)
    assert j[k, 45] == 10


def test_batched_and_padded_peaks():
    beats = torch.stack([spike_beat(), 2 * spike_beat()])
    peaks = torch.tensor([[10, 40, -1], [20, 50, 80]])
    rec = resynthesize(beats, peaks, 100, 6)
    assert rec.shape == (2, 12, 100)
    # row 0: its two peaks plus the virtual beat one RR (30) after the last; row 1's virtual beats fall outside
    assert set(np.flatnonzero(rec[0, 0].numpy())) == {10, 40, 70}
    assert set(np.flatnonzero(rec[1, 0].numpy())) == {20, 50, 80}
    with pytest.raises(ECGError):
        resynthesize(beats, torch.tensor([[-1, -1], [3, 5]]), 100, 6)


def test_simulated_record_resynthesised_from_its_median_beat():
    sig, _ = ecg_simulate(duration=10, sampling_rate=100, heart_rate=70, seed=1)
    beat, info = ecg_medianbeat(sig, 100)
    rec = resynthesize(torch.from_numpy(beat.astype(np.float32)), info["r_peaks"], sig.shape[-1], info["r_index"])
    r = np.corrcoef(rec.numpy().ravel(), (sig - np.median(sig, axis=-1, keepdims=True)).ravel())[0, 1]
    assert r > 0.95


def test_resynthesis_is_differentiable_in_the_beat():
    beat = torch.randn(2, 12, 20, requires_grad=True)
    rec = resynthesize(beat, np.array([10, 35, 60]), 80, 6)
    rec[:, 1, 35].sum().backward()
    assert beat.grad[:, 1, 6].abs().min() > 0
    assert beat.grad[:, 0].abs().sum() == 0


def test_regular_peaks():
    peaks = regular_peaks([1.0, 0.5], 500, 100)
    assert peaks[0][peaks[0] >= 0].tolist() == [60, 160, 260, 360, 460]
    assert peaks[1][peaks[1] >= 0].tolist()[:3] == [30, 80, 130]


@pytest.mark.parametrize("step", [Highpass(0.5), Bandpass(0.5, 40.0), Standardize(), FixLength(8.0, "center"),
                                  Scale(tuple(range(12)), tuple(float(i + 1) for i in range(12)))])
def test_torch_pipeline_matches_numpy(step):
    sig, _ = ecg_simulate(duration=10, sampling_rate=100, heart_rate=65, baseline_wander=0.2, noise=0.02, seed=3)
    pipe = Pipeline((Resample(100.0), step))
    expected, _ = pipe.apply_signal(sig, 100.0)
    got = TorchPipeline(pipe, 100.0)(torch.from_numpy(sig)[None])[0].numpy()
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    core = slice(200, -200)  # filtfilt's short padding leaves transients at the ends; the bulk must agree
    assert np.abs(got[:, core] - expected[:, core]).max() / scale < 0.01
    assert np.abs(got - expected).max() / scale < 0.1


class MeanAmplitude(nn.Module):
    """A toy record model: logit = mean of lead II minus 0.1 (on the preprocessed input)."""

    def forward(self, x):
        return (x[:, 1].mean(dim=-1, keepdim=True) - 0.1) * 10


def test_record_adapter_is_differentiable_and_fidelity_is_high():
    clf = Classifier(MeanAmplitude(), ["TOY"], Pipeline((Resample(100.0), Highpass(0.5))), 100.0, window_s=10.0,
                     device="cpu")
    adapter = RecordClassifierAdapter(clf, beat_rate=100.0, r_index=40)
    beats = torch.zeros(2, 12, 120, requires_grad=True)
    ctx = RecordContext(regular_peaks([0.8, 1.0], 1000, 100.0), 1000)
    p = adapter(beats, ctx)
    assert p.shape == (2, 1)
    p.sum().backward()
    assert beats.grad[:, 1].abs().sum() > 0

    records = []
    for k in range(4):
        sig, _ = ecg_simulate(duration=10, sampling_rate=100, heart_rate=60 + 8 * k, r_amplitude_mv=0.8 + 0.3 * k,
                              t_amplitude_mv=0.2 + 0.1 * k, st_mv=0.05 * k, seed=k)
        records.append(ECG(sig, 100.0, STANDARD_LEADS, source=f"sim{k}"))
    fid = resynthesis_fidelity(clf, records)
    assert fid["n_records"] == 4 and fid["skipped"] == []
    assert fid["correlation"]["TOY"] > 0.9
