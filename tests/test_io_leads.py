"""Lead names, reordering and limb-lead derivation (hand-computed values)."""
from __future__ import annotations

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import ECG, STANDARD_LEADS, derive_limb_leads, normalize_lead_name, read_ecg, standardize_leads
from ecglens.io.leads import arrange_leads, non_ecg_kind


@pytest.mark.parametrize(
    "spelling, expected",
    [
        ("I", "I"), ("lead I", "I"), ("Lead_II", "II"), ("DII", "II"), ("MLII", "II"), ("ii", "II"),
        ("3", "III"), ("D3", "III"), ("AVR", "aVR"), ("avr", "aVR"), ("aVL", "aVL"), ("a-VF", "aVF"),
        ("V1", "V1"), ("v-1", "V1"), ("V 2", "V2"), ("C3", "V3"), ("ECG V4", "V4"), ("EKG_V5", "V5"), ("lead v6", "V6"),
    ],
)
def test_normalize_lead_name_spellings(spelling, expected):
    assert normalize_lead_name(spelling) == expected


@pytest.mark.parametrize("name", ["V7", "Resp", "SpO2", "aVX", "IV", "", "time", "ECG_1", "ECG 2", "EKG3", "vx", "V"])
def test_normalize_lead_name_rejects_non_leads(name):
    assert normalize_lead_name(name) is None


def test_normalize_lead_name_reads_a_lead_after_ecg_and_lead_words():
    assert normalize_lead_name("ECG lead II") == "II" and normalize_lead_name("EKG Lead aVF") == "aVF"


@pytest.mark.parametrize("name, kind", [
    ("ABP", "pressure"), ("Resp. Imp.", "respiration"), ("PLETH", "oximetry"), ("SpO2", "oximetry"), ("CO2", "gas"),
    ("EEG Fpz-Cz", "EEG/EOG/EMG"), ("DEV_Temperature", "temperature"), ("Accelerometer_X", "motion"),
    ("EDF Annotations", "marker or annotation"), ("HR", "heart rate"), ("UC", "uterine contraction"),
    ("II", None), ("ECG_1", None), ("vx", None), ("FECG", None), ("V7", None), ("MCL1", None),
])
def test_non_ecg_kind_by_the_words_of_the_name(name, kind):
    assert non_ecg_kind(name) == kind


def test_derive_limb_leads_by_hand():
    lead_i = np.array([1.0, 0.0, -2.0, 0.5])
    lead_ii = np.array([2.0, 1.0, 4.0, -0.5])
    d = derive_limb_leads(lead_i, lead_ii)
    # III = II - I; aVR = -(I+II)/2; aVL = I - II/2; aVF = II - I/2, computed by hand:
    np.testing.assert_allclose(d["III"], [1.0, 1.0, 6.0, -1.0])
    np.testing.assert_allclose(d["aVR"], [-1.5, -0.5, -1.0, 0.0])
    np.testing.assert_allclose(d["aVL"], [0.0, -0.5, -4.0, 0.75])
    np.testing.assert_allclose(d["aVF"], [1.5, 1.0, 5.0, -0.75])


def test_standardize_leads_derives_missing_limb_leads():
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    sig = np.arange(8 * 3, dtype=np.float64).reshape(8, 3)  # I = [0,1,2], II = [3,4,5]
    out, leads = standardize_leads(sig, names)
    assert leads == STANDARD_LEADS and out.shape == (12, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[2], [3.0, 3.0, 3.0])  # III
    np.testing.assert_allclose(out[3], [-1.5, -2.5, -3.5])  # aVR
    np.testing.assert_allclose(out[4], [-1.5, -1.0, -0.5])  # aVL
    np.testing.assert_allclose(out[5], [3.0, 3.5, 4.0])  # aVF
    np.testing.assert_allclose(out[6:], sig[2:])


def test_standardize_leads_reorders_shuffled_spellings():
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(12, 5))
    order = rng.permutation(12)
    spellings = {"I": "lead I", "II": "DII", "III": "3", "aVR": "AVR", "aVL": "avl", "aVF": "aVF",
                 "V1": "V-1", "V2": "v2", "V3": "C3", "V4": "ECG V4", "V5": "V5", "V6": "lead_v6"}
    names = [spellings[STANDARD_LEADS[i]] for i in order]
    out, _ = standardize_leads(sig[order], names)
    np.testing.assert_allclose(out, sig.astype(np.float32))


def test_read_ecg_records_derived_leads(tmp_path):
    rng = np.random.default_rng(1)
    sig = rng.normal(size=(8, 200))
    path = tmp_path / "eight.npy"
    np.save(path, sig)
    ecg = read_ecg(path, sampling_rate=100, leads=["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    assert ecg.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    np.testing.assert_allclose(ecg.lead("aVL"), sig[0] - sig[1] / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "names, problem",
    [
        (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "Resp"], "missing lead(s) ['V6']"),
        (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "v5"], "duplicate lead(s) ['V5']"),
        (["I", "V1", "V2", "V3", "V4", "V5", "V6"], "missing lead(s) ['II', 'III', 'aVR', 'aVL', 'aVF']"),
    ],
)
def test_standardize_leads_bad_sets(names, problem):
    with pytest.raises(ECGError) as err:
        standardize_leads(np.ones((len(names), 4)), names, source="rec.x")
    assert problem in str(err.value) and "rec.x" in str(err.value)


def _limb_set(rng, n=6):
    lead_i, lead_ii = rng.normal(size=n), rng.normal(size=n)
    return {"I": lead_i, "II": lead_ii, **derive_limb_leads(lead_i, lead_ii)}


@pytest.mark.parametrize("pair", [("III", "aVF"), ("aVR", "aVL"), ("I", "aVF"), ("II", "III")])
def test_any_two_limb_leads_give_the_other_four(pair):
    limb = _limb_set(np.random.default_rng(2))
    precordial = np.random.default_rng(3).normal(size=(6, 6))
    names = [*pair, *STANDARD_LEADS[6:]]
    out, _ = standardize_leads(np.vstack([limb[pair[0]], limb[pair[1]], precordial]), names)
    np.testing.assert_allclose(out[:6], np.stack([limb[n] for n in STANDARD_LEADS[:6]]), atol=1e-6)
    np.testing.assert_allclose(out[6:], precordial, atol=1e-6)


def test_arrange_leads_keeps_extras_after_the_standard_leads():
    sig = np.arange(5 * 3, dtype=np.float64).reshape(5, 3)
    rows, leads, extra, derived = arrange_leads(sig, ["vx", "V5", "MLII", "ECG_1", "V7"])
    assert leads == ("II", "V5", "vx", "ECG_1", "V7") and extra == ["vx", "ECG_1", "V7"] and derived == []
    np.testing.assert_array_equal(rows, sig[[2, 1, 0, 3, 4]])


def test_arrange_leads_derives_only_for_an_eight_lead_twelve_lead_ecg():
    rng = np.random.default_rng(4)
    _, leads, _, derived = arrange_leads(rng.normal(size=(3, 5)), ["I", "II", "III"])
    assert leads == ("I", "II", "III") and derived == []
    _, leads, extra, derived = arrange_leads(rng.normal(size=(9, 5)), ["II", "aVL", *STANDARD_LEADS[6:], "V7"])
    assert leads == (*STANDARD_LEADS, "V7") and derived == ["I", "III", "aVR", "aVF"] and extra == ["V7"]


def test_ecg_standard12_derives_limb_leads_and_drops_extras():
    limb = _limb_set(np.random.default_rng(5), n=50)
    precordial = np.random.default_rng(6).normal(size=(6, 50))
    ecg = ECG(np.vstack([limb["I"], limb["III"], precordial, precordial[:1]]), 100.0,
              ("I", "III", *STANDARD_LEADS[6:], "vx"), source="frank.hea", metadata={"derived_leads": []})
    out = ecg.standard12()
    assert out.leads == STANDARD_LEADS and out.metadata["derived_leads"] == ["II", "aVR", "aVL", "aVF"]
    np.testing.assert_allclose(out.lead("aVR"), limb["aVR"], atol=1e-5)
    assert ecg.leads[-1] == "vx" and out.standard12() is out


def test_ecg_standard12_names_the_missing_leads_and_the_file():
    ecg = ECG(np.random.default_rng(7).normal(size=(2, 50)), 360.0, ("II", "V5"), source="100.hea")
    with pytest.raises(ECGError) as err:
        ecg.standard12()
    assert str(err.value).startswith("100.hea: missing lead(s) ['I', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V6']")


def test_ecg_select_by_name_or_standard_spelling():
    sig = np.random.default_rng(8).normal(size=(4, 20))
    ecg = ECG(sig, 100.0, ("I", "II", "V5", "vx"), source="r.hea")
    picked = ecg.select(["vx", "ii"])
    assert picked.leads == ("vx", "II")
    np.testing.assert_array_equal(picked.signal, sig[[3, 1]].astype(np.float32))
    with pytest.raises(ECGError, match=r"r.hea: no lead 'V6' in this record; its leads are \['I', 'II', 'V5', 'vx'\]"):
        ecg.select(["V6"])
    with pytest.raises(ECGError, match="more than once"):
        ecg.select(["II", "MLII"])
