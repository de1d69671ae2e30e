"""Lead names, reordering and limb-lead derivation (hand-computed values)."""
from __future__ import annotations

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import STANDARD_LEADS, derive_limb_leads, normalize_lead_name, read_ecg, standardize_leads


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


@pytest.mark.parametrize("name", ["V7", "Resp", "SpO2", "aVX", "IV", "", "time"])
def test_normalize_lead_name_rejects_non_leads(name):
    assert normalize_lead_name(name) is None


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
        (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "Resp"], "unrecognised lead"),
        (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "v5"], "duplicate lead"),
        (["I", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"], "missing lead"),
    ],
)
def test_standardize_leads_bad_sets(names, problem):
    with pytest.raises(ECGError) as err:
        standardize_leads(np.ones((len(names), 4)), names, source="rec.x")
    assert problem in str(err.value) and "rec.x" in str(err.value)
