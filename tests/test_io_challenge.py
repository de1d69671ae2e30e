"""PhysioNet/CinC 2020-2021 challenge records (.mat + .hea), written here from a bundled sample."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS, find_records, read_challenge, read_ecg
from ecglens.io.snomed import map_snomed, snomed_to_scp_table
from ecglens.samples import sample_path


def write_challenge(directory, name, ecg, gains=None, baselines=None, units="mV", dx="164889003,59118001",
                    mat_suffix_in_record_line=True, names=None, age="74", sex="Male"):
    """Write ``ecg`` as a challenge record: int16 ADC values in ``val`` plus a WFDB-style header."""
    n_sig = ecg.signal.shape[0]
    gains = np.full(n_sig, 1000.0) if gains is None else np.asarray(gains, dtype=float)
    baselines = np.zeros(n_sig, dtype=int) if baselines is None else np.asarray(baselines)
    val = np.round(ecg.signal.astype(np.float64) * gains[:, None] + baselines[:, None]).astype(np.int16)
    scipy.io.savemat(str(directory / f"{name}.mat"), {"val": val}, format="4")
    record = f"{name}.mat" if mat_suffix_in_record_line else name
    lines = [f"{record} {n_sig} {int(ecg.sampling_rate)} {val.shape[1]} 05-Feb-2020 11:39:16"]
    for i, lead in enumerate(names or ecg.leads):
        checksum = (int(val[i].astype(np.int64).sum()) + 32768) % 65536 - 32768  # WFDB: 16-bit sum of the samples
        lines.append(f"{name}.mat 16+24 {gains[i]:g}({baselines[i]})/{units} 16 0 {val[i, 0]} {checksum} 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}"] + ([f"#Dx: {dx}"] if dx is not None else []) + ["#Rx: Unknown", "#Hx: Unknown"]
    (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return directory / f"{name}.hea"


@pytest.fixture(scope="module")
def ref():
    return read_ecg(sample_path(3, 500))


@pytest.mark.parametrize("mat_suffix", [True, False])
@pytest.mark.parametrize("which", [".hea", ".mat", ""])
def test_round_trip_and_labels(tmp_path, ref, mat_suffix, which):
    hea = write_challenge(tmp_path, "A0001", ref, mat_suffix_in_record_line=mat_suffix)
    path = hea.with_suffix(which) if which else hea.with_suffix("")
    ecg = read_ecg(path)
    assert ecg.signal.shape == (12, 5000) and ecg.leads == STANDARD_LEADS and ecg.sampling_rate == 500
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=0.5e-3 + 1e-6)  # half an ADC step of 1/1000 mV
    assert ecg.labels == ("AFIB", "CRBBB")
    m = ecg.metadata
    assert m["format"] == "challenge" and m["record_name"] == "A0001"
    assert m["snomed"] == ["164889003", "59118001"] and m["snomed_unmapped"] == []
    assert m["age"] == 74 and m["sex"] == "Male"
    assert m["checksum_mismatch"] == {} and m["reader_flags"] == []
    assert ecg.source == str(path)


def test_checksum_mismatch_is_flagged_and_a_nu_channel_set_aside(tmp_path, ref):
    hea = write_challenge(tmp_path, "C", ref)
    lines = hea.read_text().splitlines()
    fields = lines[5].split()  # aVL
    fields[6] = str(int(fields[6]) + 7)
    fields[2] = fields[2].replace("/mV", "/NU")  # aVL becomes a channel in arbitrary units
    lines[5] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")
    ecg = read_ecg(hea)
    assert ecg.metadata["ignored_channels"] == [{"name": "aVL", "reason": "unit 'NU' is not a voltage"}]
    assert ecg.metadata["reader_flags"] == ["checksum_mismatch"] and list(ecg.metadata["checksum_mismatch"]) == ["aVL"]
    # V1-V6 and five limb leads remain: a 12-lead ECG, so aVL is derived from the others
    assert ecg.leads == STANDARD_LEADS and ecg.metadata["derived_leads"] == ["aVL"]
    np.testing.assert_allclose(ecg.lead("aVL"), ref.lead("aVL"), atol=2e-3)


def test_gains_baselines_and_lead_order_per_lead(tmp_path, ref):
    order = [11, 5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    shuffled = ref.with_signal(ref.signal[order])
    gains = np.arange(12) * 150.0 + 200.0
    baselines = np.arange(12) * 7 - 40
    names = ["V6", "AVF", "I", "II", "III", "AVR", "AVL", "V1", "V2", "V3", "V4", "V5"]
    write_challenge(tmp_path, "B", shuffled, gains=gains, baselines=baselines, names=names)
    ecg = read_challenge(tmp_path / "B.hea")
    assert ecg.metadata["adc_gain"] == list(gains) and ecg.metadata["baseline"] == list(baselines)
    step = 0.5 / gains[np.argsort(order)]
    assert np.all(np.abs(ecg.signal - ref.signal) <= step[:, None] + 1e-6)


def test_microvolt_units(tmp_path, ref):
    uv = ref.with_signal(ref.signal * 1000)
    write_challenge(tmp_path, "U", uv, gains=np.ones(12), units="uV")
    ecg = read_ecg(tmp_path / "U.mat")
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=0.5e-3 + 1e-6)
    assert ecg.metadata["original_units"] == ["uV"] * 12


@pytest.mark.parametrize(
    "dx, labels, unmapped",
    [
        ("426783006", ("SR",), []),
        ("270492004, 164873001, 427172004", ("1AVB", "LVH", "PVC"), []),
        ("733534002,164909002", ("CLBBB",), []),
        ("284470004,63593006,17338001", ("PAC", "PVC"), []),
        ("164934002,59931005,251146004,10370003", ("INVT", "LVOLT", "PACE", "TAB_"), []),
        ("39732003,164889003,999999", ("AFIB",), ["39732003", "999999"]),
        ("39732003", (), ["39732003"]),
    ],
)
def test_dx_mapping(tmp_path, ref, dx, labels, unmapped):
    write_challenge(tmp_path, "D", ref, dx=dx)
    ecg = read_ecg(tmp_path / "D.hea")
    assert ecg.labels == labels
    assert ecg.metadata["snomed_unmapped"] == unmapped


def test_no_dx_line_means_no_labels(tmp_path, ref):
    write_challenge(tmp_path, "N", ref, dx=None, age="NaN", sex="Unknown")
    ecg = read_ecg(tmp_path / "N.hea")
    assert ecg.labels is None and "snomed" not in ecg.metadata
    assert "age" not in ecg.metadata and "sex" not in ecg.metadata


def test_mapping_table_is_consistent():
    table = snomed_to_scp_table()
    assert table["713427006"] == "CRBBB" and table["59118001"] == "CRBBB"
    assert table["164889003"] == "AFIB" and table["164890007"] == "AFLT" and table["713426002"] == "IRBBB"
    assert table["445118002"] == "LAFB" and table["427393009"] == "SARRH" and table["426177001"] == "SBRAD"
    assert table["427084000"] == "STACH"
    assert "39732003" not in table  # left axis deviation: PTB-XL has no such statement
    assert map_snomed(["427084000", "427084000", "1"]) == (("STACH",), ["1"])


def test_find_records_lists_each_challenge_record_once(tmp_path, ref):
    write_challenge(tmp_path, "A0001", ref)
    write_challenge(tmp_path, "A0002", ref)
    assert find_records(tmp_path) == [tmp_path / "A0001.hea", tmp_path / "A0002.hea"]


def _assert_error(path, problem):
    with pytest.raises(ECGError) as err:
        read_ecg(path)
    assert problem in str(err.value), str(err.value)
    return str(err.value)


def test_mat_shape_disagrees_with_header(tmp_path, ref):
    write_challenge(tmp_path, "S", ref)
    scipy.io.savemat(str(tmp_path / "S.mat"), {"val": np.zeros((11, 5000), dtype=np.int16)}, format="4")
    msg = _assert_error(tmp_path / "S.hea", "header/data mismatch")
    assert "S.mat" in msg and "(11, 5000)" in msg


def test_mat_without_val(tmp_path, ref):
    write_challenge(tmp_path, "V", ref)
    scipy.io.savemat(str(tmp_path / "V.mat"), {"data": np.ones((12, 5000))}, format="4")
    assert "V.mat" in _assert_error(tmp_path / "V.hea", "no 'val' array")


def test_garbled_mat(tmp_path, ref):
    write_challenge(tmp_path, "G", ref)
    (tmp_path / "G.mat").write_bytes(b"\x00garbage" * 10)
    assert "G.mat" in _assert_error(tmp_path / "G.hea", "unreadable .mat")


def test_missing_mat(tmp_path, ref):
    write_challenge(tmp_path, "M", ref)
    (tmp_path / "M.mat").unlink()
    assert "M.mat" in _assert_error(tmp_path / "M.hea", "missing signal file")


def test_mat_without_header(tmp_path, ref):
    write_challenge(tmp_path, "H", ref)
    (tmp_path / "H.hea").unlink()
    assert "H.mat" in _assert_error(tmp_path / "H.mat", "missing header file")


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda t: t.replace("H2 12 500", "H2 twelve 500"), "unreadable header record line"),
        (lambda t: t.replace("16+24 1000(0)/mV", "16+24 abc/mV", 1), "unreadable header signal line"),
        (lambda t: "\n".join(t.splitlines()[:5]), "announces 12 signals but has 4"),
    ],
)
def test_garbled_header(tmp_path, ref, edit, problem):
    hea = write_challenge(tmp_path, "H2", ref, mat_suffix_in_record_line=False)
    hea.write_text(edit(hea.read_text()))
    assert "H2.hea" in _assert_error(tmp_path / "H2.mat", problem)


def test_gain_without_baseline_uses_adc_zero(tmp_path, ref):
    hea = write_challenge(tmp_path, "Z", ref)
    hea.write_text(hea.read_text().replace("1000(0)/mV", "1000/mV"))  # the form the 2020 files use
    ecg = read_ecg(hea)
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=0.5e-3 + 1e-6)
    assert ecg.metadata["baseline"] == [0] * 12
