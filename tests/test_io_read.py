"""read_ecg dispatch and find_records over a directory of mixed formats."""
from __future__ import annotations

import os
import shutil

import edfio
import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS, find_records, read_ecg
from ecglens.samples import sample_path, samples_dir


def _copy_wfdb(src_base, dst_dir):
    dst_dir.mkdir(parents=True, exist_ok=True)
    for ext in (".hea", ".dat"):
        shutil.copy(src_base.with_name(src_base.name + ext), dst_dir / (src_base.name + ext))
    return dst_dir / (src_base.name + ".hea")


def test_find_records_mixed_directory(tmp_path):
    ref = read_ecg(sample_path(3, 100))
    wfdb_hea = _copy_wfdb(sample_path(3, 100), tmp_path / "records100" / "00000")
    wfdb_hr = _copy_wfdb(sample_path(3, 500), tmp_path / "records500" / "00000")
    np.save(tmp_path / "a.npy", ref.signal)
    (tmp_path / "b.csv").write_text(",".join(STANDARD_LEADS) + "\n" + "\n".join(",".join(map(str, r)) for r in ref.signal.T) + "\n")
    (tmp_path / "index.csv").write_text("ecg_id,scp_codes\n3,NORM\n")  # a metadata table, not an ECG
    (tmp_path / "notes.txt").write_text("not a record")
    np.save(tmp_path / "scalar.npy", np.float32(1.0))  # not 2-D: not an ECG
    edf_dir = tmp_path / "edf"
    edf_dir.mkdir()
    edfio.Edf([edfio.EdfSignal(ref.signal[i].astype(np.float64), 100, label=n, physical_dimension="mV")
               for i, n in enumerate(STANDARD_LEADS)]).write(edf_dir / "c.edf")
    found = find_records(tmp_path)
    expected = sorted([wfdb_hea, wfdb_hr, tmp_path / "a.npy", tmp_path / "b.csv", edf_dir / "c.edf"])
    assert found == expected
    rates = {".hea": None, ".edf": None, ".npy": 100, ".csv": 100}
    for path in found:
        ecg = read_ecg(path, sampling_rate=rates[path.suffix])
        assert ecg.leads == STANDARD_LEADS and ecg.signal.shape[0] == 12
    assert find_records(tmp_path / "a.npy") == [tmp_path / "a.npy"]
    bare = wfdb_hea.with_suffix("")
    assert find_records(bare) == [bare]


def test_find_records_bundled_samples():
    found = find_records(samples_dir())
    assert len(found) == 22 and all(p.suffix == ".hea" for p in found)


def test_find_records_missing(tmp_path):
    with pytest.raises(ECGError, match="no such file or directory"):
        find_records(tmp_path / "gone")


@pytest.mark.parametrize("name, problem", [("x.txt", "unsupported file type '.txt'"), ("noext", "unsupported file type '(no suffix)'")])
def test_unsupported_suffix(tmp_path, name, problem):
    (tmp_path / name).write_text("1,2,3")
    with pytest.raises(ECGError) as err:
        read_ecg(tmp_path / name)
    assert problem in str(err.value) and name in str(err.value)


@pytest.mark.parametrize("name", ["gone.edf", "gone.csv", "gone.npy", "gone.hea", "gone.mat", "gone"])
def test_missing_files(tmp_path, name):
    with pytest.raises(ECGError) as err:
        read_ecg(tmp_path / name, sampling_rate=100)
    assert "no such file" in str(err.value) and name in str(err.value)


def test_directory_is_not_a_record(tmp_path):
    with pytest.raises(ECGError, match="find_records"):
        read_ecg(tmp_path)


@pytest.mark.parametrize("suffix", [".hea", ".dat", ".edf", ".csv", ".npy", ".xml", ".dcm", ".ecg", ""])
def test_a_fifo_is_refused_without_hanging(tmp_path, suffix):
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    if suffix == ".dat":  # a header naming a FIFO as its signal file
        (tmp_path / "pipe.hea").write_text("pipe 1 100 10\npipe.dat 16 200/mV 16 0 0 0 0 II\n")
        fifo = tmp_path / "pipe.hea"
    with pytest.raises(ECGError, match="not a regular file") as err:
        read_ecg(fifo, sampling_rate=100)
    assert "pipe" in str(err.value)


def test_a_device_is_refused():
    with pytest.raises(ECGError, match="/dev/zero: not a regular file"):
        read_ecg("/dev/zero")


def test_a_directory_as_signal_file_is_refused(tmp_path):
    (tmp_path / "rec.dat").mkdir()
    (tmp_path / "rec.hea").write_text("rec 1 100 10\nrec.dat 16 200/mV 16 0 0 0 0 II\n")
    with pytest.raises(ECGError, match="rec.dat: not a regular file"):
        read_ecg(tmp_path / "rec.hea")


@pytest.mark.parametrize("name, problem", [
    ("x" * 300 + ".dat", "signal file name of 304 bytes; file names hold at most 255"),
    ("y" * 300 + ".mat", "signal file name of 304 bytes; file names hold at most 255"),
    ("../elsewhere.mat", "is not a plain file name"),
    ("sub/rec.mat", "is not a plain file name"),
])
def test_signal_file_names_that_are_not_plain_names(tmp_path, name, problem):
    fmt = "16+24" if name.endswith(".mat") else "16"  # a .mat signal file: the challenge layout
    (tmp_path / "rec.hea").write_text(f"rec 1 100 10\n{name} {fmt} 200/mV 16 0 0 0 0 II\n")
    with pytest.raises(ECGError) as err:
        read_ecg(tmp_path / "rec.hea")
    assert problem in str(err.value) and "rec.hea" in str(err.value)


@pytest.mark.parametrize("path, problem", [
    ("/tmp/" + "y" * 300 + ".edf", "unusable path (File name too long)"),
    ("/tmp/" + "y" * 300, "unusable path (File name too long)"),
    ("/tmp/bad\0name.hea", "unusable path (embedded null byte)"),
])
def test_odd_paths_are_an_ecgerror_never_an_oserror(path, problem):
    with pytest.raises(ECGError, match=r"unusable path") as err:
        read_ecg(path)
    assert problem in str(err.value)
    with pytest.raises(ECGError, match=r"unusable path"):
        find_records(path)
