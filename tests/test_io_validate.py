"""Readers validate what they return: finite float32 samples, plausible rates, sizes that match their headers."""
from __future__ import annotations

import shutil

import edfio
import numpy as np
import pytest

import ecglens.io.ishne
from ecglens.errors import ECGError
from ecglens.io import ECG, STANDARD_LEADS, read_ecg
from ecglens.io._common import validate_ecg
from ecglens.samples import sample_path


@pytest.fixture(scope="module")
def ref():
    return read_ecg(sample_path(3, 100))


def _message(path, **kw) -> str:
    with pytest.raises(ECGError) as err:
        read_ecg(path, **kw)
    assert str(path) in str(err.value)
    return str(err.value)


def _wfdb_copy(tmp_path, edit):
    """The bundled record 3 (100 Hz) with each header line passed through ``edit``."""
    base = sample_path(3, 100)
    shutil.copy(f"{base}.dat", tmp_path / "00003_lr.dat")
    lines = open(f"{base}.hea").read().splitlines()
    (tmp_path / "00003_lr.hea").write_text("\n".join(edit(i, ln) for i, ln in enumerate(lines)) + "\n")
    return tmp_path / "00003_lr.hea"


@pytest.mark.parametrize("signal, rate, leads, problem", [
    (np.full((2, 10), 1e39) * [[1], [-1]] + np.arange(10), 100, ("I", "II"), "beyond float32's range"),
    (np.random.default_rng(0).normal(size=(2, 10)), 1e12, ("I", "II"), r"implausible sampling rate 1e\+12 Hz"),
    (np.random.default_rng(0).normal(size=(2, 10)), 0.5, ("I", "II"), "implausible sampling rate 0.5 Hz"),
    (np.random.default_rng(0).normal(size=(2, 10)), 100, ("I", "I"), "distinct and non-empty"),
    (np.random.default_rng(0).normal(size=(2, 10)), 100, ("I", " "), "distinct and non-empty"),
    (np.ones((2, 10)), 100, ("I", "II"), "flat signal"),
    (np.ones((2, 0)), 100, ("I", "II"), "empty signal"),
])
def test_validate_ecg_refuses(signal, rate, leads, problem):
    ecg = ECG(signal, rate, leads, source="made.npy")
    assert ecg.signal.dtype == np.float32
    with pytest.raises(ECGError, match=problem) as err:
        validate_ecg(ecg)
    assert str(err.value).startswith("made.npy: ")


def test_validate_ecg_returns_a_good_record(ref):
    assert validate_ecg(ref, "other.hea") is ref


def test_wfdb_gain_of_1e_minus_40_overflows_float32_and_is_refused(tmp_path):
    hea = _wfdb_copy(tmp_path, lambda i, ln: ln.replace(" 1000.0(0)/mV", " 1e-40(0)/mV").replace(" 1000/mV", " 1e-40/mV"))
    assert "1e-40" in hea.read_text()
    assert "NaN/inf value(s) (missing samples, or beyond float32's range)" in _message(hea)


@pytest.mark.parametrize("rate, problem", [("1e12", "sampling frequency field '1e12' (read as 1 Hz)"),
                                           ("200000", "implausible sampling rate 200000 Hz"),
                                           ("0.01", "implausible sampling rate 0.01 Hz")])
def test_wfdb_absurd_sampling_rates(tmp_path, rate, problem):
    hea = _wfdb_copy(tmp_path, lambda i, ln: ln.replace(" 100 ", f" {rate} ", 1) if i == 0 else ln)
    assert problem in _message(hea)


def test_challenge_gain_of_1e_minus_40_is_refused(tmp_path, ref):
    import scipy.io

    val = np.round(ref.signal.astype(np.float64) * 1000).astype(np.int16)
    scipy.io.savemat(str(tmp_path / "A1.mat"), {"val": val}, format="4")
    lines = ["A1 12 100 1000"] + [f"A1.mat 16+24 1e-40/mV 16 0 0 0 0 {lead}" for lead in STANDARD_LEADS]
    (tmp_path / "A1.hea").write_text("\n".join(lines) + "\n")
    assert "beyond float32's range" in _message(tmp_path / "A1.hea")


def _edf_bytes(ref) -> bytes:
    signals = [edfio.EdfSignal(ref.signal[i].astype(np.float64), 100, label=n, physical_dimension="mV")
               for i, n in enumerate(STANDARD_LEADS)]
    buffer = edfio.Edf(signals)
    import io

    out = io.BytesIO()
    buffer.write(out)
    return out.getvalue()


def _physical_max_offset(n_signals: int = 12) -> int:
    return 256 + n_signals * (16 + 80 + 8 + 8)  # label, transducer, dimension, physical minimum


@pytest.mark.parametrize("edit, problem", [
    (lambda b: b[:-500], "truncated EDF file: header promises 10 data records of 2400 bytes (24000 bytes) "
                         "but the file holds 23500 bytes of data"),
    (lambda b: b[:236] + b"99999999" + b[244:], "header promises 99999999 data records"),
    (lambda b: b + b"\0" * 2400, "header/data mismatch"),
    (lambda b: b[:244] + b"0       " + b[252:], "data record duration of 0 s"),
    (lambda b: b[:244] + b"1e-9    " + b[252:], "implausible sampling rate 1e+11 Hz"),
    (lambda b: b[:_physical_max_offset()] + b"1e308   " + b[_physical_max_offset() + 8:], "beyond float32's range"),
    (lambda b: b[:100], "truncated EDF header: 100 of 256 bytes"),
])
def test_edf_headers_that_disagree_with_the_file(tmp_path, ref, edit, problem):
    path = tmp_path / "rec.edf"
    good = _edf_bytes(ref)
    path.write_bytes(good)
    assert read_ecg(path).leads == STANDARD_LEADS
    path.write_bytes(edit(good))
    assert problem in _message(path)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_tabular_values_beyond_float32_are_refused(tmp_path, ref, suffix):
    data = ref.signal.astype(np.float64).copy()
    data[4, 10] = 5e38
    path = tmp_path / f"big{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    else:
        path.write_text(",".join(STANDARD_LEADS) + "\n" + "\n".join(",".join(f"{v:.9g}" for v in row) for row in data.T) + "\n")
    assert "1 NaN/inf value(s)" in _message(path, sampling_rate=100) and "['aVL']" in _message(path, sampling_rate=100)
    assert "implausible sampling rate" in _message(tmp_path / f"big{suffix}", sampling_rate=1e308)


def test_read_ecg_validates_whatever_a_reader_returns(tmp_path, ref, monkeypatch):
    """The final check in read_ecg covers every reader, the hospital ones included."""
    path = tmp_path / "holter.ecg"
    path.write_bytes(b"ISHNE1.0")
    broken = ECG(np.where(np.arange(1000) == 3, np.inf, ref.signal), 100.0, STANDARD_LEADS, source=str(path))
    monkeypatch.setattr(ecglens.io.ishne, "read_ishne", lambda *a, **k: broken)
    assert "12 NaN/inf value(s)" in _message(path)
