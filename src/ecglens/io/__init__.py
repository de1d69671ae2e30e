"""Reading ECGs from files: ``read_ecg(path)`` -> ``ECG`` (float32, 12 standard leads, mV).

Per-format readers live in their own modules (WFDB, PhysioNet/CinC challenge,
EDF/EDF+, CSV/NPY); ``read_ecg`` picks one by suffix and ``find_records`` lists
the records in a directory.
"""
from .challenge import read_challenge
from .edf import read_edf
from .leads import STANDARD_LEADS, derive_limb_leads, normalize_lead_name, standardize_leads
from .reader import find_records, read_ecg
from .record import ECG
from .tabular import read_csv, read_npy
from .wfdb_format import read_wfdb

__all__ = [
    "ECG",
    "STANDARD_LEADS",
    "derive_limb_leads",
    "find_records",
    "normalize_lead_name",
    "read_challenge",
    "read_csv",
    "read_ecg",
    "read_edf",
    "read_npy",
    "read_wfdb",
    "standardize_leads",
]
