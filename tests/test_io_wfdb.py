"""WFDB reading: bundled PTB-XL samples, golden values, other fmts, and every bad-input case."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS, read_ecg, read_wfdb
from ecglens.samples import sample_path

# Values wfdb.rdrecord(...).p_signal gave once for sample ecg_id 3: (sample index, lead, mV).
GOLDEN = {
    100: [(0, "I", -0.029), (10, "II", -0.092), (250, "aVF", 0.2), (500, "V1", 0.084), (999, "V6", 0.006), (137, "V4", 0.086)],
    500: [(0, "I", -0.035), (10, "II", -0.06), (250, "aVF", 0.08), (500, "V1", -0.01), (999, "V6", 0.032), (137, "V4", -0.016)],
}


def _copy_sample(tmp_path, ecg_id=3, rate=100):
    base = sample_path(ecg_id, rate)
    for ext in (".hea", ".dat"):
        shutil.copy(base.with_name(base.name + ext), tmp_path / (base.name + ext))
    return tmp_path / base.name


@pytest.mark.parametrize("rate, n", [(100, 1000), (500, 5000)])
def test_sample_shape_order_and_golden_values(rate, n):
    ecg = read_ecg(sample_path(3, rate))
    assert ecg.signal.shape == (12, n) and ecg.signal.dtype == np.float32
    assert ecg.leads == STANDARD_LEADS and ecg.sampling_rate == rate and ecg.units == "mV"
    for i, lead, value in GOLDEN[rate]:
        assert ecg.lead(lead)[i] == pytest.approx(value, abs=1e-6)
    m = ecg.metadata
    assert m["format"] == "wfdb" and m["original_leads"][3] == "AVR" and m["original_units"] == ["mV"] * 12
    assert m["n_samples"] == n and m["derived_leads"] == [] and m["adc_gain"] == [1000.0] * 12
    assert ecg.labels is None


@pytest.mark.parametrize("suffix", ["", ".hea", ".dat"])
def test_dispatch_by_hea_dat_or_bare_name(suffix):
    base = sample_path(3, 100)
    ecg = read_ecg(str(base) + suffix)
    np.testing.assert_array_equal(ecg.signal, read_ecg(base).signal)
    assert ecg.source == str(base) + suffix


def test_matches_wfdb_rdrecord_everywhere():
    base = sample_path(172, 500)
    rec = wfdb.rdrecord(str(base))
    ecg = read_ecg(base)
    np.testing.assert_allclose(ecg.signal, rec.p_signal.T.astype(np.float32))


def _headers():
    """Headers to check the plain-header parser on: the bundled samples, a written record with comments and
    no lead names, and wfdb-python's sample data when ``../shared`` is beside the repository."""
    from ecglens.samples import list_samples

    out = [info.paths[r] for info in list_samples() for r in info.rates]
    zoo = Path(__file__).resolve().parents[2] / "shared" / "data" / "external" / "wfdb-sample-data"
    return out + sorted(p.with_suffix("") for p in zoo.glob("*.hea"))


def test_plain_headers_parse_as_wfdb_parses_them(tmp_path):
    from ecglens.io.wfdb_format import _plain_header

    wfdb.wrsamp("plain", fs=250, units=["mV"] * 2, sig_name=["I", "V1 lead"], p_signal=np.ones((20, 2)) * 0.5,
                fmt=["16", "16"], write_dir=str(tmp_path), comments=["age: 61", " sex: F"])
    headers = _headers() + [tmp_path / "plain"]
    parsed = 0
    for base in headers:
        text = base.with_name(base.name + ".hea").read_text(errors="replace")
        plain = _plain_header(text)
        if plain is None:
            continue
        parsed += 1
        want = wfdb.rdheader(str(base))
        assert isinstance(want, wfdb.Record), base
        for field in ("record_name", "n_sig", "fs", "sig_len", "file_name", "fmt", "samps_per_frame", "skew",
                      "byte_offset", "adc_gain", "baseline", "units", "adc_res", "adc_zero", "init_value", "checksum",
                      "block_size", "sig_name", "comments"):
            assert getattr(plain, field) == getattr(want, field), (base, field)
    assert parsed >= 13  # the bundled samples and the written record at least
    assert _plain_header("rec 2 100 10\nrec.dat 212 200/mV 12 0 0 0 0 I\nrec.dat 212 200/mV 12 0 0 0 0 II") is None
    assert _plain_header("rec 2 100 10\nrec.dat 16 200(0)/mV 16 0 0 0 0 I") is None  # one signal line short
    assert _plain_header("rec/2 2 100 10\na 10\nb 10") is None  # multi-segment


def test_plain_records_read_exactly_as_through_wfdb(tmp_path, monkeypatch):
    from ecglens.io import wfdb_format

    signal = np.round(np.sin(np.linspace(0, 9, 600)).reshape(300, 2) * 1000) / 1000
    wfdb.wrsamp("edges", fs=100, units=["mV", "mV"], sig_name=["I", "II"], p_signal=signal, fmt=["16", "16"],
                write_dir=str(tmp_path))
    raw = np.fromfile(tmp_path / "edges.dat", dtype="<i2").reshape(300, 2)
    raw[:3, 0] = raw[-2:, 1] = -32768  # WFDB's invalid value at both edges
    raw[100, 1] += 7  # and a checksum mismatch
    raw.tofile(tmp_path / "edges.dat")
    bases = [b for b in _headers() if wfdb_format._plain_header(b.with_name(b.name + ".hea").read_text(
        errors="replace")) is not None] + [tmp_path / "edges"]
    fast = {b: read_wfdb(b) for b in bases}
    monkeypatch.setattr(wfdb_format, "_plain_header", lambda text: None)
    for base, ecg in fast.items():
        slow = read_wfdb(base)
        np.testing.assert_array_equal(ecg.signal, slow.signal, err_msg=str(base))
        assert ecg.metadata == slow.metadata and ecg.leads == slow.leads, base
    m = fast[tmp_path / "edges"].metadata
    assert m["trimmed_invalid_samples"] == {"start": 3, "end": 2} and "checksum_mismatch" in m["reader_flags"]


@pytest.mark.parametrize("fmt", ["212", "16"])
def test_wrsamp_other_fmt_with_odd_lead_names_and_comments(tmp_path, fmt):
    ref = read_ecg(sample_path(3, 100))
    order = [6, 0, 3, 1, 2, 5, 4, 11, 7, 8, 9, 10]
    odd = {"I": "lead I", "II": "II", "III": "III", "aVR": "avr", "aVL": "AVL", "aVF": "a-VF",
           "V1": "V-1", "V2": "v2", "V3": "V3", "V4": "C4", "V5": "V5", "V6": "lead V6"}
    wfdb.wrsamp("odd", fs=100, units=["mV"] * 12, sig_name=[odd[STANDARD_LEADS[i]] for i in order],
                p_signal=ref.signal[order].T.astype(np.float64), fmt=[fmt] * 12,
                comments=["Age: 37", "Sex: F", "written by a test"], write_dir=str(tmp_path))
    ecg = read_ecg(tmp_path / "odd.hea")
    assert ecg.leads == STANDARD_LEADS
    span = ref.signal.max(axis=1) - ref.signal.min(axis=1)
    step = span / (2 ** (12 if fmt == "212" else 16) - 2)  # one quantisation step per lead
    assert np.all(np.abs(ecg.signal - ref.signal) <= step[:, None] + 1e-6)
    assert ecg.metadata["fmt"] == [fmt] * 12
    assert ecg.metadata["comments"] == ["Age: 37", "Sex: F", "written by a test"]
    assert ecg.metadata["age"] == 37 and ecg.metadata["sex"] == "F"


@pytest.mark.parametrize("unit, scale", [("uV", 1000.0), ("V", 0.001)])
def test_units_converted_to_mv(tmp_path, unit, scale):
    ref = read_ecg(sample_path(3, 100))
    d = np.round(ref.signal.T.astype(np.float64) * 1000).astype(np.int16)
    wfdb.wrsamp("u", fs=100, units=[unit] * 12, sig_name=list(STANDARD_LEADS), d_signal=d, fmt=["16"] * 12,
                adc_gain=[1000.0 / scale] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    ecg = read_ecg(tmp_path / "u")
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-6)
    assert ecg.metadata["original_units"] == [unit] * 12 and ecg.units == "mV"


def test_only_i_and_ii_limb_leads_are_derived(tmp_path):
    ref = read_ecg(sample_path(3, 100))
    keep = [0, 1, 6, 7, 8, 9, 10, 11]
    wfdb.wrsamp("eight", fs=100, units=["mV"] * 8, sig_name=[STANDARD_LEADS[i] for i in keep],
                d_signal=np.round(ref.signal[keep].T * 1000).astype(np.int16), fmt=["16"] * 8,
                adc_gain=[1000.0] * 8, baseline=[0] * 8, write_dir=str(tmp_path))
    ecg = read_ecg(tmp_path / "eight")
    assert ecg.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    i, ii = ecg.lead("I").astype(np.float64), ecg.lead("II").astype(np.float64)
    np.testing.assert_allclose(ecg.lead("III"), ii - i, atol=1e-6)
    np.testing.assert_allclose(ecg.lead("aVR"), -(i + ii) / 2, atol=1e-6)
    # PTB-XL's own III is II - I to within rounding of its integer samples
    np.testing.assert_allclose(ecg.lead("III"), ref.lead("III"), atol=0.0021)


def _assert_error(path, problem, **kw):
    with pytest.raises(ECGError) as err:
        read_ecg(path, **kw)
    msg = str(err.value)
    assert problem in msg, msg
    return msg


def test_missing_record(tmp_path):
    msg = _assert_error(tmp_path / "nothere", "no such file")
    assert "nothere" in msg


def test_missing_dat(tmp_path):
    base = _copy_sample(tmp_path)
    (tmp_path / "00003_lr.dat").unlink()
    assert "00003_lr.dat" in _assert_error(base.with_suffix(".hea"), "missing signal file")


def test_dat_without_header(tmp_path):
    _copy_sample(tmp_path)
    (tmp_path / "00003_lr.hea").unlink()
    assert "00003_lr" in _assert_error(tmp_path / "00003_lr.dat", "missing header file")


def test_truncated_dat(tmp_path):
    base = _copy_sample(tmp_path)
    dat = tmp_path / "00003_lr.dat"
    dat.write_bytes(dat.read_bytes()[:10000])
    msg = _assert_error(base, "truncated signal file")
    assert "00003_lr.dat" in msg and "24000" in msg and "10000" in msg


def test_header_signal_count_disagrees_with_dat(tmp_path):
    base = _copy_sample(tmp_path)
    hea = tmp_path / "00003_lr.hea"
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([lines[0].replace(" 12 ", " 11 ")] + lines[1:12]) + "\n")  # drop V6
    assert "00003_lr.dat" in _assert_error(base, "header/data mismatch")


def test_header_promises_more_samples(tmp_path):
    base = _copy_sample(tmp_path)
    hea = tmp_path / "00003_lr.hea"
    hea.write_text(hea.read_text().replace("00003_lr 12 100 1000", "00003_lr 12 100 1200", 1))
    _assert_error(base, "truncated signal file")


@pytest.mark.parametrize("garbage", ["this is not a header\n", "00003_lr twelve 100 1000\nfoo bar\n", ""])
def test_garbled_header(tmp_path, garbage):
    base = _copy_sample(tmp_path)
    (tmp_path / "00003_lr.hea").write_text(garbage)
    msg = _assert_error(base, "header")
    assert "00003_lr" in msg


def test_nan_in_signal(tmp_path):
    sig = read_ecg(sample_path(3, 100)).signal.T.astype(np.float64)
    sig[100:110, 4] = np.nan  # wrsamp writes the invalid-sample value, rdrecord reads NaN
    wfdb.wrsamp("gap", fs=100, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=sig, fmt=["16"] * 12, write_dir=str(tmp_path))
    msg = _assert_error(tmp_path / "gap", "10 invalid sample(s)")
    assert "gap" in msg and "['aVL']" in msg and "at sample(s) 100, 101" in msg


def test_invalid_samples_at_the_edges_are_cut_and_flagged(tmp_path):
    sig = read_ecg(sample_path(3, 100)).signal.T.astype(np.float64)
    sig[:7, 2] = np.nan
    sig[-3:, 9] = np.nan
    wfdb.wrsamp("edges", fs=100, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=sig, fmt=["16"] * 12,
                write_dir=str(tmp_path))
    ecg = read_ecg(tmp_path / "edges")
    assert ecg.n_samples == 1000 - 10 and ecg.metadata["trimmed_invalid_samples"] == {"start": 7, "end": 3}
    assert ecg.metadata["reader_flags"] == ["invalid_samples_trimmed"]
    np.testing.assert_allclose(ecg.signal, sig[7:-3].T, atol=1e-3)


def test_flat_signal(tmp_path):
    wfdb.wrsamp("flat", fs=100, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), d_signal=np.full((1000, 12), 7, dtype=np.int16),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    assert "flat" in _assert_error(tmp_path / "flat.hea", "flat signal")


def test_empty_signal(tmp_path):
    base = _copy_sample(tmp_path)
    hea = tmp_path / "00003_lr.hea"
    hea.write_text(hea.read_text().replace("00003_lr 12 100 1000", "00003_lr 12 100 0", 1))
    (tmp_path / "00003_lr.dat").write_bytes(b"")
    assert "00003_lr" in _assert_error(base, "0 samples")


def test_non_ecg_channels_are_set_aside_with_their_reason(tmp_path):
    sig = read_ecg(sample_path(3, 100)).signal.T.astype(np.float64)
    names = list(STANDARD_LEADS[:10]) + ["Resp", "Pleth"]
    wfdb.wrsamp("resp", fs=100, units=["mV"] * 11 + ["NU"], sig_name=names, p_signal=sig, fmt=["16"] * 12,
                write_dir=str(tmp_path))
    ecg = read_ecg(tmp_path / "resp")
    assert ecg.leads == STANDARD_LEADS[:10] and ecg.metadata["extra_leads"] == []
    assert ecg.metadata["ignored_channels"] == [{"name": "Resp", "reason": "respiration signal, not an ECG lead"},
                                                {"name": "Pleth", "reason": "oximetry signal, not an ECG lead"}]
    assert "missing lead(s) ['V5', 'V6']" in str(pytest.raises(ECGError, ecg.standard12).value)


def test_only_non_ecg_channels_is_an_error_listing_them(tmp_path):
    wfdb.wrsamp("abp", fs=125, units=["mmHg", "NU"], sig_name=["ART", "SIG"], fmt=["16"] * 2, write_dir=str(tmp_path),
                p_signal=np.random.default_rng(0).normal(size=(500, 2)))
    msg = _assert_error(tmp_path / "abp", "no ECG lead among the channels")
    assert "ART (pressure signal, not an ECG lead)" in msg and "SIG (unit 'NU' is not a voltage)" in msg


def test_frank_leads_and_channels_at_another_rate(tmp_path):
    ref = read_ecg(sample_path(3, 100))
    d = np.round(ref.signal[:4].T * 1000).astype(np.int64)
    fast = np.repeat(d[:, 0], 2)  # a channel at two samples per frame: 200 Hz
    wfdb.wrsamp("frank", fs=100, units=["mV"] * 5, sig_name=["II", "vx", "vy", "vz", "ECG_1"], fmt=["16"] * 5,
                e_d_signal=[d[:, 0], d[:, 1], d[:, 2], d[:, 3], fast], samps_per_frame=[1, 1, 1, 1, 2],
                adc_gain=[1000.0] * 5, baseline=[0] * 5, write_dir=str(tmp_path))
    ecg = read_ecg(tmp_path / "frank")
    assert ecg.leads == ("II", "vx", "vy", "vz") and ecg.metadata["extra_leads"] == ["vx", "vy", "vz"]
    assert ecg.metadata["ignored_channels"] == [{"name": "ECG_1", "reason": "sampled at 200 Hz; the other ECG channels at 100 Hz"}]
    np.testing.assert_allclose(ecg.signal, d.T / 1000.0, atol=1e-6)
    assert ecg.metadata["checksum_mismatch"] == {} and ecg.metadata["reader_flags"] == []


def test_checksum_mismatch_is_flagged_not_fatal(tmp_path):
    base = _copy_sample(tmp_path)
    hea = tmp_path / "00003_lr.hea"
    lines = hea.read_text().splitlines()
    fields = lines[2].split()  # lead II: its checksum is the seventh field
    stated = int(fields[6])
    fields[6] = str(stated + 1)
    hea.write_text("\n".join(lines[:2] + [" ".join(fields)] + lines[3:]) + "\n")
    ecg = read_ecg(base)
    assert ecg.metadata["reader_flags"] == ["checksum_mismatch"]
    assert ecg.metadata["checksum_mismatch"] == {"II": {"header": stated + 1, "data": stated % 65536}}
    np.testing.assert_array_equal(ecg.signal, read_ecg(sample_path(3, 100)).signal)


def test_duplicate_leads(tmp_path):
    base = _copy_sample(tmp_path)
    hea = tmp_path / "00003_lr.hea"
    text = hea.read_text()
    hea.write_text(text[: text.rindex(" V6")] + " v5" + text[text.rindex(" V6") + 3:])
    msg = _assert_error(base, "duplicate lead")
    assert "00003_lr" in msg and "V5" in msg


def test_sampling_rate_must_match(tmp_path):
    assert "00003_lr" in _assert_error(sample_path(3, 100), "sampled at 100 Hz", sampling_rate=500)
    assert read_wfdb(sample_path(3, 100), sampling_rate=100).sampling_rate == 100
