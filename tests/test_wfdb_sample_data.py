"""Every record of wfdb-python's sample data (``../shared/data/external/wfdb-sample-data``) reads or gets a reason.

Each of the 35 records (34 headers and one EDF) either reads as an ECG that passes
validation, with the leads listed here, or raises the ECGError listed here: one line
naming the file and a reason a person would accept (mostly "no signal file": the
sample set keeps only files under 2 MB).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import read_ecg
from ecglens.io._common import validate_ecg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "external" / "wfdb-sample-data"

# record file -> (leads read, rate in Hz, samples) or the error it ends in
READS = {
    "03700181.hea": (("MCL1",), 500.0, 299984),  # 212x4: 4 samples per frame; ABP and RESP set aside
    "100.hea": (("II", "V5"), 360.0, 650000),  # MIT-BIH: MLII is lead II
    "100-no-len.hea": (("II", "V5"), 360.0, 650000),  # length from the signal file's size
    "100_3chan.hea": (("I", "II", "III"), 360.0, 999),
    "100skew.hea": (("II", "V5"), 360.0, 649997),  # V5 skewed by 3 samples: cut to the samples both leads have
    "3000003_0003.hea": (("II", "V"), 125.0, 1028),
    "310derive.hea": (("col 0", "col 1"), 250.0, 1026),
    "310derive_2.hea": (("col 1",), 360.0, 1020),
    "310derive_3.hea": (("ch1",), 360.0, 1018),
    "311derive.hea": (("col 0",), 250.0, 1026),
    "311derive_2.hea": (("col 1",), 360.0, 1020),
    "311derive_3.hea": (("ch1",), 360.0, 1019),
    "311derive_4.hea": (("ch1",), 360.0, 1018),
    "a103l.hea": (("II", "V"), 250.0, 82500),  # PLETH ('NU') set aside
    "a103l-no-len.hea": (("II", "V"), 250.0, 82500),
    "binformats.hea": (tuple(f"sig {i}, fmt {f}" for i, f in enumerate([8, 16, 61, 80, 160, 212, 310, 311, 24, 32])), 200.0, 499),
    "flacformats.hea": (("sig 0, fmt 508", "sig 1, fmt 516", "sig 2, fmt 524"), 200.0, 499),
    "mixedsignals.hea": (("II", "III", "V"), 249.89, 56576),  # 1024 leading invalid samples cut; ABP, Pleth, Resp set aside
    "p10143.hea": (("FECG",), 500.0, 450000),  # UC (uterine contraction) set aside
    "s0010_re.hea": (("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "vx", "vy", "vz"), 1000.0, 38400),
    "test01_00s.hea": (("ECG 1", "ECG 2", "ECG 3", "ECG 4"), 500.0, 4000),  # generic channels, not leads I-III
    "test01_00s_frame.hea": (("ECG_1", "ECG_3"), 500.0, 4000),  # ECG_2 at 1000 Hz set aside
    "test01_00s_skew.hea": (("ECG_1", "ECG_2", "ECG_3", "ECG_4"), 500.0, 3997),
    "test01_00s_skewframe.hea": (("ECG_1", "ECG_3"), 500.0, 3997),
}

REFUSED = {
    "1003.hea": "1003.dat: missing signal file named by header 1003.hea",
    "12726.hea": "12726.dat: missing signal file named by header 12726.hea",
    "drive02.hea": "drive02.dat: missing signal file named by header drive02.hea",
    "drive02-no-len.hea": "drive02.dat: missing signal file named by header drive02-no-len.hea",
    "flac_3_constant.hea": "flac_3_constant.hea: flat signal: every lead is constant",
    "n16.hea": "n16.dat: missing signal file named by header n16.hea",
    "n8_evoked_raw_95_F1_R9.hea": "n8_evoked_raw_95_F1_R9.dat: missing signal file named by header n8_evoked_raw_95_F1_R9.hea",
    "test_edfann.edf": "test_edfann.edf: no ECG lead: the file holds no signal channels (EDF+ annotations only)",
    "test_generator_2.hea": "test_generator_2.dat: missing signal file named by header test_generator_2.hea",
    "v102s.hea": ("v102s.hea: 5 invalid sample(s) (WFDB's missing-value code) inside the record in lead(s) ['II', 'V'], "
                  "at sample(s) 5591, 11537, 36967, 50890, 74592"),
    "wave_4.hea": "wave_4.dat: missing signal file named by header wave_4.hea",
}

SLOW = {"flac_3_constant.hea"}  # 5.6 million FLAC-coded samples per channel


def _records() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if p.suffix in {".hea", ".edf"}) if DATA.is_dir() else []


needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"wfdb sample data not found at {DATA}")


@needs_data
def test_every_record_is_in_one_table():
    found = _records()
    assert len(found) == 35
    assert sorted(found) == sorted([*READS, *REFUSED]) and not set(READS) & set(REFUSED)


@needs_data
@pytest.mark.parametrize("name", sorted(READS))
def test_record_reads_with_its_leads(name):
    ecg = read_ecg(DATA / name)
    leads, rate, n = READS[name]
    assert (ecg.leads, ecg.n_samples) == (leads, n) and ecg.sampling_rate == pytest.approx(rate)
    assert validate_ecg(ecg) is ecg and ecg.signal.dtype == np.float32
    assert ecg.metadata["reader_flags"] in ([], ["invalid_samples_trimmed"])  # every checksum matches


@needs_data
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(REFUSED)])
def test_record_is_refused_with_its_reason(name):
    with pytest.raises(ECGError) as err:
        read_ecg(DATA / name)
    assert str(err.value) == f"{DATA}/{REFUSED[name]}"
    assert "\n" not in str(err.value)


@needs_data
def test_ptb_record_keeps_the_frank_leads_and_gives_the_standard_twelve():
    ecg = read_ecg(DATA / "s0010_re.hea")
    assert ecg.metadata["extra_leads"] == ["vx", "vy", "vz"] and ecg.metadata["derived_leads"] == []
    assert ecg.metadata["age"] == 81 and ecg.metadata["sex"] == "female"
    twelve = ecg.standard12()
    assert twelve.leads == ecg.leads[:12]
    np.testing.assert_array_equal(twelve.signal, ecg.signal[:12])


@needs_data
def test_set_aside_channels_are_listed_with_their_reason():
    assert read_ecg(DATA / "a103l.hea").metadata["ignored_channels"] == [
        {"name": "PLETH", "reason": "oximetry signal, not an ECG lead"}]
    mixed = read_ecg(DATA / "mixedsignals.hea")
    assert [c["name"] for c in mixed.metadata["ignored_channels"]] == ["ABP", "Pleth", "Resp"]
    assert mixed.metadata["trimmed_invalid_samples"] == {"start": 1024, "end": 0}
    assert mixed.metadata["reader_flags"] == ["invalid_samples_trimmed"]


@needs_data
def test_mit_bih_record_names_the_missing_leads_at_model_time():
    ecg = read_ecg(DATA / "100.hea")
    with pytest.raises(ECGError) as err:
        ecg.standard12()
    assert "missing lead(s) ['I', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V6']" in str(err.value)
