"""Reading ECGs from files: ``read_ecg(path)`` -> ``ECG`` (float32 (leads, samples) in mV, the leads it has).

Per-format readers live in their own modules (WFDB, PhysioNet/CinC challenge,
EDF/EDF+, CSV/NPY, GE MUSE, Philips Sierra, HL7 aECG, DICOM, ISHNE); ``read_ecg``
picks one by suffix and ``find_records`` lists the records in a directory;
``write_ecg`` writes WFDB, EDF or CSV.
"""
from .aecg import read_aecg
from .challenge import read_challenge
from .dicom import read_dicom
from .edf import read_edf
from .ishne import read_ishne
from .leads import STANDARD_LEADS, derive_limb_leads, normalize_lead_name, standardize_leads
from .muse import read_muse
from .philips import read_philips
from .reader import find_records, read_ecg
from .record import ECG
from .tabular import read_csv, read_npy
from .wfdb_format import read_wfdb
from .write import write_ecg

__all__ = [
    "ECG",
    "STANDARD_LEADS",
    "derive_limb_leads",
    "find_records",
    "normalize_lead_name",
    "read_aecg",
    "read_challenge",
    "read_csv",
    "read_dicom",
    "read_ecg",
    "read_edf",
    "read_ishne",
    "read_muse",
    "read_npy",
    "read_philips",
    "read_wfdb",
    "standardize_leads",
    "write_ecg",
]
