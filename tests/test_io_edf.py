"""EDF/EDF+ files written with edfio from a bundled sample and read back."""
from __future__ import annotations

import edfio
import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS, read_ecg, read_edf
from ecglens.samples import sample_path

LABELS = ["ECG I", "EKG II", "III", "EEG aVR", "ECG AVL", "lead aVF", "ECG V1", "V2", "ECG V3", "ECG V4", "ECG V5", "ECG V6"]


@pytest.fixture(scope="module")
def ref():
    return read_ecg(sample_path(172, 500))


def _signals(ecg, unit="uV", scale=1000.0, labels=LABELS):
    return [edfio.EdfSignal(ecg.signal[i].astype(np.float64) * scale, ecg.sampling_rate, label=labels[i], physical_dimension=unit)
            for i in range(12)]


def _step(ecg, scale=1.0):
    """One 16-bit quantisation step per lead, in mV (edfio spans each signal's own range)."""
    span = (ecg.signal.max(axis=1) - ecg.signal.min(axis=1)).astype(np.float64)
    return span / 65535.0 + 1e-6 * scale


@pytest.mark.parametrize("unit, scale", [("uV", 1000.0), ("mV", 1.0), ("V", 1e-3)])
def test_round_trip_units(tmp_path, ref, unit, scale):
    path = tmp_path / "rec.edf"
    edfio.Edf(_signals(ref, unit, scale)).write(path)
    ecg = read_ecg(path)
    assert ecg.signal.shape == (12, 5000) and ecg.leads == STANDARD_LEADS and ecg.sampling_rate == 500
    assert np.all(np.abs(ecg.signal - ref.signal) <= _step(ref)[:, None] + 1e-5)
    assert ecg.metadata["format"] == "edf" and ecg.metadata["original_units"] == [unit] * 12
    assert ecg.metadata["original_leads"] == LABELS and ecg.metadata["ignored_channels"] == []


def test_non_ecg_channels_and_annotations_are_left_out_and_listed(tmp_path, ref):
    shuffled = _signals(ref)[::-1]
    resp = edfio.EdfSignal(np.sin(np.arange(250) / 10.0), 25, label="Resp", physical_dimension="a.u.")
    annotations = [edfio.EdfAnnotation(1.0, None, "start"), edfio.EdfAnnotation(5.5, 0.5, "PVC")]
    path = tmp_path / "plus.edf"
    edfio.Edf(shuffled + [resp], annotations=annotations).write(path)
    ecg = read_edf(path)
    assert np.all(np.abs(ecg.signal - ref.signal) <= _step(ref)[:, None] + 1e-5)
    assert ecg.metadata["ignored_channels"] == [{"name": "Resp", "reason": "respiration signal, not an ECG lead"}]


def test_only_i_and_ii_derives_limb_leads(tmp_path, ref):
    keep = [0, 1, 6, 7, 8, 9, 10, 11]
    sigs = [s for i, s in enumerate(_signals(ref)) if i in keep]
    path = tmp_path / "eight.edf"
    edfio.Edf(sigs).write(path)
    ecg = read_ecg(path)
    assert ecg.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    np.testing.assert_allclose(ecg.lead("aVF"), ecg.lead("II") - ecg.lead("I") / 2, atol=1e-6)


def test_leads_override_names_every_channel(tmp_path, ref):
    path = tmp_path / "plain.edf"
    edfio.Edf(_signals(ref, labels=[f"ch{i}" for i in range(12)])).write(path)
    ecg = read_ecg(path, leads=list(STANDARD_LEADS))
    assert np.all(np.abs(ecg.signal - ref.signal) <= _step(ref)[:, None] + 1e-5)


def _assert_error(path, problem, **kw):
    with pytest.raises(ECGError) as err:
        read_ecg(path, **kw)
    assert problem in str(err.value) and path.name in str(err.value), str(err.value)


def test_channel_at_another_rate_is_set_aside(tmp_path, ref):
    sigs = _signals(ref)
    sigs[7] = edfio.EdfSignal(ref.signal[7, ::2].astype(np.float64) * 1000, 250, label="V2", physical_dimension="uV")
    path = tmp_path / "rates.edf"
    edfio.Edf(sigs).write(path)
    ecg = read_ecg(path)
    assert ecg.leads == tuple(n for n in STANDARD_LEADS if n != "V2") and ecg.sampling_rate == 500
    assert ecg.metadata["ignored_channels"] == [{"name": "V2", "reason": "sampled at 250 Hz; the other ECG channels at 500 Hz"}]


def test_unknown_unit(tmp_path, ref):
    path = tmp_path / "unit.edf"
    edfio.Edf(_signals(ref, unit="degC")).write(path)
    _assert_error(path, "I (unit 'degC' is not a voltage)")


def test_no_ecg_channels(tmp_path):
    path = tmp_path / "eeg.edf"
    edfio.Edf([edfio.EdfSignal(np.sin(np.arange(1000.0)), 100, label="EEG Fpz-Cz", physical_dimension="uV")]).write(path)
    _assert_error(path, "no ECG lead")


def test_limb_leads_only_read_and_standard12_names_the_missing(tmp_path, ref):
    path = tmp_path / "six.edf"
    edfio.Edf(_signals(ref)[:6]).write(path)
    ecg = read_ecg(path)
    assert ecg.leads == STANDARD_LEADS[:6]
    with pytest.raises(ECGError, match=r"missing lead\(s\) \['V1', 'V2', 'V3', 'V4', 'V5', 'V6'\]") as err:
        ecg.standard12()
    assert path.name in str(err.value)


def test_garbled_file(tmp_path):
    path = tmp_path / "junk.edf"
    path.write_bytes(b"0       " + b"x" * 300)
    _assert_error(path, "unreadable EDF")


def test_rate_mismatch(tmp_path, ref):
    path = tmp_path / "rec.edf"
    edfio.Edf(_signals(ref)).write(path)
    _assert_error(path, "sampled at 500 Hz", sampling_rate=100)


def test_other_ecg_leads_are_kept_under_their_sensor_names(tmp_path, ref):
    extra = [edfio.EdfSignal(ref.signal[i].astype(np.float64) * 1000, 500, label=label, physical_dimension="uV")
             for i, label in [(1, "EKG II"), (2, "ECG vx"), (3, "EKG V7"), (4, "EEG Fpz-Cz"), (5, "ECG")]]
    path = tmp_path / "frank.edf"
    edfio.Edf(extra).write(path)
    ecg = read_ecg(path)
    assert ecg.leads == ("II", "vx", "V7", "ECG") and ecg.metadata["extra_leads"] == ["vx", "V7", "ECG"]
    assert ecg.metadata["ignored_channels"] == [{"name": "EEG Fpz-Cz", "reason": "EEG/EOG/EMG signal, not an ECG lead"}]
    assert np.all(np.abs(ecg.signal[1] - ref.signal[2]) <= _step(ref)[2] + 1e-5)
