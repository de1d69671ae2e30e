"""``ecglens read`` and ``ecglens plot`` on the bundled samples and on broken files."""
from __future__ import annotations

import json
import shutil

import matplotlib.image
import numpy as np
import pytest

from ecglens.cli import main
from ecglens.cli.read import to_jsonable
from ecglens.samples import list_samples, load_sample, sample_path


@pytest.fixture(scope="module")
def sample():
    info = list_samples()[0]
    return info, sample_path(info.ecg_id, 100)


def test_read_json_of_a_sample(sample, capsys):
    info, path = sample
    assert main(["read", f"{path}.hea", "--json"]) == 0
    out = capsys.readouterr()
    (summary,) = json.loads(out.out)
    assert summary["leads"] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert summary["sampling_rate"] == 100.0
    assert summary["duration_s"] == 10.0 and summary["n_samples"] == 1000
    assert summary["units"] == "mV"
    assert summary["labels"] == list(load_sample(info.ecg_id).labels) == sorted(info.scp_codes)
    assert summary["metadata"]["ecg_id"] == info.ecg_id
    assert summary["metadata"]["derived_leads"] == []
    assert out.err == ""


def test_read_text_summary_of_a_bare_record_name(sample, capsys):
    info, path = sample
    assert main(["read", str(path)]) == 0
    text = capsys.readouterr().out
    assert "100 Hz, 1000 samples, 10 s, units mV" in text
    assert "format wfdb" in text and "no derived leads" in text
    assert f"labels    {', '.join(info.labels)}" in text


def test_one_good_one_bad_file_exits_2_and_reports_both(sample, tmp_path, capsys):
    _, path = sample
    bad = tmp_path / "garbage.hea"
    bad.write_bytes(b"\x00\xffnot a header at all\n\x13\x37")
    assert main(["read", f"{path}.hea", str(bad), "--json"]) == 2
    out = capsys.readouterr()
    (summary,) = json.loads(out.out)
    assert summary["source"] == f"{path}.hea"
    assert f"ecglens: error: {bad}:" in out.err
    assert "1 of 2 files could not be read" in out.err


def test_directory_with_csv_needs_rate(sample, tmp_path, capsys):
    info, path = sample
    ecg = load_sample(info.ecg_id)
    for suffix in (".hea", ".dat"):  # the header names its .dat, so the record keeps its name
        shutil.copy(f"{path}{suffix}", tmp_path)
    header = ",".join(ecg.leads)
    np.savetxt(tmp_path / "rec2.csv", ecg.signal.T, delimiter=",", header=header, comments="", fmt="%.4f")
    assert main(["read", str(tmp_path), "--json"]) == 2
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 1
    assert "rec2.csv: .csv files carry no sampling rate; pass --rate HZ" in out.err
    assert "1 of 2 files could not be read" in out.err
    # with --rate the CSV reads, and the WFDB record's rate (100 Hz) matches it
    assert main(["read", str(tmp_path), "--json", "--rate", "100"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [s["n_samples"] for s in summaries] == [1000, 1000]
    assert [s["labels"] for s in summaries] == [None, None]  # outside a PTB-XL tree: no labels


def test_empty_directory_and_missing_file_are_failures(tmp_path, capsys):
    assert main(["read", str(tmp_path), str(tmp_path / "nope.edf")]) == 2
    err = capsys.readouterr().err
    assert "no ECG records found" in err and "nope.edf" in err
    assert "2 of 2 files could not be read" in err


def test_to_jsonable_converts_numpy_and_non_finite():
    value = {"a": np.float32(1.5), "b": np.arange(3), 3: (np.int64(2), float("nan")), "c": {np.bool_(True)}}
    assert to_jsonable(value) == {"a": 1.5, "b": [0, 1, 2], "3": [2, None], "c": [True]}
    json.dumps(to_jsonable(value), allow_nan=False)


@pytest.mark.parametrize("layout, height_mm", [("12x1", 322), ("3x4", 182)])
def test_plot_writes_png_of_paper_size(sample, tmp_path, capsys, layout, height_mm):
    _, path = sample
    out = tmp_path / "out" / "ecg.png"
    assert main(["plot", f"{path}.hea", "-o", str(out), "--layout", layout, "--dpi", "100", "--title", "T"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    height, width = matplotlib.image.imread(out).shape[:2]
    assert abs(width - 270 / 25.4 * 100) <= 1
    assert abs(height - height_mm / 25.4 * 100) <= 1


def test_plot_rejects_bad_output_suffix_and_bad_input(sample, tmp_path, capsys):
    _, path = sample
    assert main(["plot", f"{path}.hea", "-o", str(tmp_path / "ecg.jpg")]) == 2
    assert "unsupported figure type" in capsys.readouterr().err
    garbage = tmp_path / "x.edf"
    garbage.write_bytes(b"garbage")
    assert main(["plot", str(garbage), "-o", str(tmp_path / "x.png")]) == 2
    assert f"ecglens: error: {garbage}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.edf"]


@pytest.fixture()
def frank(tmp_path):
    """A WFDB record of leads II and V5, a Frank lead vx and a respiration channel (from sample 3)."""
    import wfdb

    from ecglens.io import read_ecg

    ref = read_ecg(sample_path(3, 500))
    wfdb.wrsamp("frank", fs=500, units=["mV"] * 4, sig_name=["MLII", "V5", "vx", "RESP"], fmt=["16"] * 4,
                p_signal=ref.signal[[1, 10, 4, 2]].T.astype(np.float64), write_dir=str(tmp_path))
    return tmp_path / "frank.hea"


def test_read_any_lead_set_lists_extra_and_set_aside_channels(frank, capsys):
    assert main(["read", str(frank)]) == 0
    text = capsys.readouterr().out
    assert "leads     3: II V5 vx" in text and "extra     vx (not among the 12 standard leads)" in text
    assert "set aside RESP (respiration signal, not an ECG lead)" in text
    assert main(["read", str(frank), "--leads", "vx,ii", "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["leads"] == ["vx", "II"] and summary["metadata"]["extra_leads"] == ["vx"]


def test_leads_option_names_what_is_missing(frank, capsys):
    assert main(["read", str(frank), "--leads", "V1"]) == 2
    assert "no lead 'V1' in this record; its leads are ['II', 'V5', 'vx']" in capsys.readouterr().err


def test_plot_and_beat_work_on_a_lead_subset(frank, tmp_path, capsys):
    out = tmp_path / "frank.png"
    assert main(["plot", str(frank), "-o", str(out), "--dpi", "50"]) == 0
    height = matplotlib.image.imread(out).shape[0]
    assert abs(height - (14 + 3 * 25 + 8) / 25.4 * 50) <= 1  # one 25-mm row per lead
    assert main(["plot", str(frank), "-o", str(out), "--dpi", "50", "--leads", "V5"]) == 0
    assert abs(matplotlib.image.imread(out).shape[0] - (14 + 25 + 8) / 25.4 * 50) <= 1
    capsys.readouterr()
    assert main(["plot", str(frank), "-o", str(tmp_path / "x.png"), "--layout", "3x4"]) == 2
    assert "missing lead(s) ['I', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V6']" in capsys.readouterr().err
    assert main(["beat", str(frank), "--json", "--leads", "II,V5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["measurements"]["r_amplitude_mv"]) == ["II", "V5"]
    assert report["quality"]["beats_kept"] >= 8
