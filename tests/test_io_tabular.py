"""CSV and NPY files written from a bundled sample and read back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS, read_csv, read_ecg, read_npy
from ecglens.samples import sample_path


@pytest.fixture(scope="module")
def ref():
    return read_ecg(sample_path(286, 100))


def _write_csv(path, header, rows, sep=","):
    lines = ([sep.join(header)] if header else []) + [sep.join(f"{v:.6g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_header_with_time_column_and_shuffled_spellings(tmp_path, ref):
    order = [3, 0, 1, 2, 4, 5, 11, 10, 9, 8, 7, 6]
    spell = ["AVR", "lead I", "II", "III", "avl", "AVF", "V6", "V5", "V4", "V3", "V-2", "V1"]
    t = np.arange(ref.n_samples) / 100.0
    path = _write_csv(tmp_path / "rec.csv", ["time"] + spell, np.column_stack([t, ref.signal[order].T]))
    ecg = read_ecg(path, sampling_rate=100)
    assert ecg.signal.shape == (12, 1000) and ecg.leads == STANDARD_LEADS
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-6)
    assert ecg.metadata["format"] == "csv" and ecg.metadata["header_row"] is True


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_csv_without_header_is_standard_order(tmp_path, ref, sep):
    path = _write_csv(tmp_path / "plain.csv", None, ref.signal.T, sep=sep)
    ecg = read_csv(path, sampling_rate=100)
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-6)
    assert ecg.metadata["header_row"] is False


def test_csv_pandas_style_index_column(tmp_path, ref):
    rows = np.column_stack([np.arange(ref.n_samples), ref.signal.T])
    path = _write_csv(tmp_path / "pd.csv", [""] + list(STANDARD_LEADS), rows)
    np.testing.assert_allclose(read_ecg(path, sampling_rate=100).signal, ref.signal, atol=1e-6)


def test_csv_eight_leads_derives_limb_leads(tmp_path, ref):
    keep = [0, 1, 6, 7, 8, 9, 10, 11]
    path = _write_csv(tmp_path / "eight.csv", [STANDARD_LEADS[i] for i in keep], ref.signal[keep].T)
    ecg = read_ecg(path, sampling_rate=100)
    assert ecg.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    np.testing.assert_allclose(ecg.lead("III"), ref.lead("II") - ref.lead("I"), atol=1e-5)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_european_csv_with_decimal_commas(tmp_path, ref, sep):
    rows = [sep.join(f"{v:.6f}".replace(".", ",") for v in row) for row in ref.signal[[1, 10]].T]
    path = tmp_path / "eu.csv"
    path.write_text(sep.join(["time (s)", "II", "V5"]) + "\n"
                    + "\n".join(f"{i / 100:.2f}".replace(".", ",") + sep + r for i, r in enumerate(rows)) + "\n")
    ecg = read_ecg(path, sampling_rate=100)
    assert ecg.leads == ("II", "V5") and ecg.n_samples == 1000 and ecg.metadata["delimiter"] == sep
    np.testing.assert_allclose(ecg.signal, ref.signal[[1, 10]], atol=1e-6)


def test_comma_separated_csv_never_reads_a_decimal_comma(tmp_path):
    path = tmp_path / "comma.csv"
    path.write_text("I,II\n1,5,2\n")
    _assert_error(path, "line 2: 3 columns, expected 2", sampling_rate=100)


def test_csv_keeps_other_leads_and_sets_non_ecg_columns_aside(tmp_path, ref):
    path = _write_csv(tmp_path / "mixed.csv", ["V7", "II", "Resp", "ECG_1"], ref.signal[[11, 1, 2, 3]].T)
    ecg = read_ecg(path, sampling_rate=100)
    assert ecg.leads == ("II", "V7", "ECG_1") and ecg.metadata["extra_leads"] == ["V7", "ECG_1"]
    assert ecg.metadata["ignored_channels"] == [{"name": "Resp", "reason": "respiration signal, not an ECG lead"}]
    np.testing.assert_allclose(ecg.signal, ref.signal[[1, 11, 3]], atol=1e-6)


@pytest.mark.parametrize("transpose", [False, True])
def test_npy_round_trip_both_orientations(tmp_path, ref, transpose):
    path = tmp_path / "rec.npy"
    np.save(path, ref.signal.T if transpose else ref.signal)
    ecg = read_ecg(path, sampling_rate=100)
    np.testing.assert_array_equal(ecg.signal, ref.signal)
    assert ecg.metadata["original_shape"] == ([1000, 12] if transpose else [12, 1000])


def test_npy_with_explicit_lead_names(tmp_path, ref):
    order = [6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]
    path = tmp_path / "chest_first.npy"
    np.save(path, ref.signal[order].astype(np.float64).T)
    ecg = read_npy(path, sampling_rate=100, leads=[STANDARD_LEADS[i] for i in order])
    np.testing.assert_array_equal(ecg.signal, ref.signal)


def _assert_error(path, problem, **kw):
    with pytest.raises(ECGError) as err:
        read_ecg(path, **kw)
    assert problem in str(err.value) and path.name in str(err.value), str(err.value)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_rate_is_required(tmp_path, ref, suffix):
    path = tmp_path / f"r{suffix}"
    if suffix == ".npy":
        np.save(path, ref.signal)
    else:
        _write_csv(path, list(STANDARD_LEADS), ref.signal.T)
    _assert_error(path, "pass sampling_rate explicitly")


@pytest.mark.parametrize(
    "header, rows, problem",
    [
        (None, np.ones((5, 11)), "must have 12 columns"),
        (["Resp", "SpO2"], np.random.default_rng(0).normal(size=(5, 2)), "no ECG lead among the channels"),
        (list(STANDARD_LEADS[:11]) + ["v5"], np.random.default_rng(0).normal(size=(5, 12)), "duplicate lead"),
        (list(STANDARD_LEADS), np.ones((0, 12)), "0 samples"),
        (list(STANDARD_LEADS), np.ones((5, 12)), "flat signal"),
        (list(STANDARD_LEADS), np.where(np.eye(5, 12) > 0, np.nan, np.arange(60.0).reshape(5, 12)), "NaN/inf"),
    ],
)
def test_csv_bad_input(tmp_path, header, rows, problem):
    _assert_error(_write_csv(tmp_path / "bad.csv", header, rows), problem, sampling_rate=100)


def test_csv_ragged_and_non_numeric(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(",".join(STANDARD_LEADS) + "\n" + ",".join(["1"] * 12) + "\n" + ",".join(["2"] * 11) + "\n")
    _assert_error(path, "line 3: 11 columns", sampling_rate=100)
    path = tmp_path / "text.csv"
    path.write_text(",".join(STANDARD_LEADS) + "\n" + ",".join(["1"] * 11 + ["x"]) + "\n")
    _assert_error(path, "line 2: non-numeric", sampling_rate=100)


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    _assert_error(path, "empty CSV", sampling_rate=100)


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.ones((3, 4, 5)), "expected a 2-D array"),
        (np.ones((10, 11)), "no axis of length 12"),
        (np.zeros((12, 0)), "0 samples"),
        (np.full((12, 100), 0.3), "flat signal"),
        (np.array([["a"] * 5] * 12), "real numeric"),
        (np.where(np.arange(1200).reshape(12, 100) == 50, np.inf, 1.0 * np.arange(1200).reshape(12, 100)), "NaN/inf"),
    ],
)
def test_npy_bad_input(tmp_path, array, problem):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    _assert_error(path, problem, sampling_rate=100)


def test_npy_garbled_and_pickled(tmp_path):
    path = tmp_path / "junk.npy"
    path.write_bytes(b"not an npy file at all")
    _assert_error(path, "cannot read .npy", sampling_rate=100)
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _assert_error(path, "cannot read .npy", sampling_rate=100)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
@pytest.mark.parametrize("unit, factor", [("uV", 1000.0), ("V", 0.001), ("mV", 1.0)])
def test_units_scale_to_millivolts(tmp_path, ref, suffix, unit, factor):
    path = tmp_path / f"rec{suffix}"
    values = ref.signal.astype(np.float64) * factor
    if suffix == ".npy":
        np.save(path, values)
    else:
        _write_csv(path, list(STANDARD_LEADS), values.T)
    ecg = read_ecg(path, sampling_rate=100, units=unit)
    np.testing.assert_allclose(ecg.signal, ref.signal, rtol=1e-5, atol=1e-6)
    assert ecg.units == "mV" and ecg.metadata["original_units"] == f"{unit} (given)"
    assert read_ecg(path, sampling_rate=100).metadata["original_units"] == "mV (assumed)"


def test_units_errors(tmp_path, ref):
    path = tmp_path / "rec.npy"
    np.save(path, ref.signal)
    _assert_error(path, "units must be uV, mV or V, got 'furlongs'", sampling_rate=100, units="furlongs")
    header = sample_path(286, 100).with_suffix(".hea")
    _assert_error(header, "files state their own units", units="uV")


def test_cli_read_with_units(tmp_path, ref, capsys):
    from ecglens.cli import main

    path = _write_csv(tmp_path / "uv.csv", list(STANDARD_LEADS), ref.signal.T * 1000.0)
    assert main(["read", str(path), "--rate", "100", "--units", "uV", "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["metadata"]["original_units"] == "uV (given)"
    with pytest.raises(SystemExit) as err:
        main(["read", str(path), "--rate", "100", "--units", "furlongs"])
    assert err.value.code == 2 and "invalid choice: 'furlongs'" in capsys.readouterr().err
