"""``ecglens convert``: any readable ECG to WFDB, EDF or CSV, read back to the same values; errors name the file."""
from __future__ import annotations

import numpy as np
import pytest

from ecglens.cli import main
from ecglens.io import STANDARD_LEADS, read_ecg
from ecglens.samples import sample_path


@pytest.fixture(scope="module")
def source():
    return sample_path(172, 500)


@pytest.fixture(scope="module")
def ref(source):
    return read_ecg(source)


def _step(ecg) -> np.ndarray:
    """One 16-bit quantisation step per lead (WFDB and EDF both span each lead's range), in mV."""
    span = (ecg.signal.max(axis=1) - ecg.signal.min(axis=1)).astype(np.float64)
    return span / 65000.0 + 2e-6


@pytest.mark.parametrize("name, tolerance", [("rec.hea", "step"), ("rec.edf", "step"), ("rec.csv", 1e-6)])
def test_round_trip_per_output_format(tmp_path, capsys, source, ref, name, tolerance):
    out = tmp_path / "out" / name
    assert main(["convert", str(source) + ".hea", "-o", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    back = read_ecg(out, sampling_rate=500 if out.suffix == ".csv" else None)
    assert back.signal.shape == (12, 5000) and back.sampling_rate == 500 and back.leads == STANDARD_LEADS
    limit = _step(ref) if tolerance == "step" else np.full(12, tolerance)
    assert np.all(np.abs(back.signal - ref.signal).max(axis=1) <= limit)
    expected = ["rec.dat", "rec.hea"] if out.suffix == ".hea" else [name]
    assert sorted(p.name for p in out.parent.iterdir()) == expected  # no temporaries left behind
    assert sorted(p.split("/")[-1] for p in printed) == expected


def test_hospital_format_to_wfdb_keeps_age_and_sex(tmp_path, capsys):
    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = pydicom_data.get_testdata_file("waveform_ecg.dcm")
    out = tmp_path / "dicom.hea"
    assert main(["convert", dicom, "-o", str(out)]) == 0
    original, back = read_ecg(dicom), read_ecg(out)
    assert back.sampling_rate == 1000 and back.n_samples == 10000
    assert np.all(np.abs(back.signal - original.signal).max(axis=1) <= _step(original))
    assert (back.metadata["age"], back.metadata["sex"]) == (42, "Female")
    assert any("waveform_ecg.dcm" in c for c in back.metadata["comments"])


def test_csv_input_needs_rate_and_converts_with_it(tmp_path, capsys, ref):
    csv = tmp_path / "in.csv"
    assert main(["convert", str(sample_path(172, 500)), "-o", str(csv)]) == 0
    out = tmp_path / "from_csv.edf"
    assert main(["convert", str(csv), "-o", str(out)]) == 2
    assert f"{csv}" in capsys.readouterr().err and not out.exists()
    assert main(["convert", str(csv), "-o", str(out), "--rate", "500"]) == 0
    assert np.all(np.abs(read_ecg(out).signal - ref.signal).max(axis=1) <= _step(ref))


def test_bad_output_suffix_and_unwritable_edf_leave_nothing(tmp_path, capsys, source, ref):
    png = tmp_path / "x.png"
    assert main(["convert", str(source) + ".hea", "-o", str(png)]) == 2
    err = capsys.readouterr().err
    assert str(png) in err and ".hea, .edf, .csv" in err and not png.exists()
    # 1000 samples at 360 Hz: no EDF data-record duration fits its 8-character field
    odd = tmp_path / "odd.csv"
    np.savetxt(odd, ref.signal[:, :1000].T, delimiter=",", header=",".join(STANDARD_LEADS), comments="")
    edf = tmp_path / "odd.edf"
    assert main(["convert", str(odd), "-o", str(edf), "--rate", "360"]) == 2
    assert "EDF cannot hold 1000 samples at 360 Hz" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.csv"]


def test_overwrites_an_existing_output(tmp_path, capsys, source):
    out = tmp_path / "rec.csv"
    out.write_text("old")
    assert main(["convert", str(source) + ".hea", "-o", str(out)]) == 0
    assert out.read_text().startswith("time_s,I,II,III,aVR")
