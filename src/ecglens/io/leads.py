"""Lead names: normalise any common spelling, tell ECG from other channels, order leads, derive limb leads."""
from __future__ import annotations

import re

import numpy as np

from ..errors import ECGError

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_LEADS: tuple[str, ...] = STANDARD_LEADS[:6]
PRECORDIAL_LEADS: tuple[str, ...] = STANDARD_LEADS[6:]

# Each limb lead as (weight of I, weight of II): Einthoven's law and Goldberger's augmented leads.
_LIMB_IN_I_II = {"I": (1.0, 0.0), "II": (0.0, 1.0), "III": (-1.0, 1.0),
                 "aVR": (-0.5, -0.5), "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0)}

_ROMAN = {"1": "I", "2": "II", "3": "III", "I": "I", "II": "II", "III": "III"}
_AUGMENTED = {"R": "aVR", "L": "aVL", "F": "aVF"}

# Words in a channel name that mark a signal other than an ECG lead, by what it records.
_NON_ECG_WORDS = {
    "pressure": ("abp", "art", "pap", "cvp", "icp", "bp", "nbp", "sbp", "dbp", "map", "pressure"),
    "respiration": ("resp", "respiration", "breath", "thor", "thorax", "abdo", "abdomen", "airflow", "flow", "nasal",
                    "snore"),
    "oximetry": ("pleth", "spo2", "sao2", "ppg", "pulse"),
    "gas": ("co2", "etco2", "o2"),
    "EEG/EOG/EMG": ("eeg", "eog", "emg"),
    "skin": ("gsr", "eda"),
    "temperature": ("temp", "temperature"),
    "motion": ("accel", "accelerometer", "acc", "angle", "position", "pos", "gyro"),
    "heart rate": ("hr", "rr", "hrv"),
    "marker or annotation": ("marker", "event", "annotation", "annotations", "status", "stim", "trigger"),
    "uterine contraction": ("uc", "toco"),
}
_NON_ECG_BY_WORD = {word: kind for kind, words in _NON_ECG_WORDS.items() for word in words}


def normalize_lead_name(name: str) -> str | None:
    """The standard spelling of a lead name, or None if it is not one of the 12.

    Accepts case variants and common decorations: ``"lead II"``, ``"ECG lead II"``,
    ``"DII"``, ``"MLII"``, ``"AVR"``, ``"avr"``, ``"aVR"``, ``"V-1"``, ``"v1"``,
    ``"C1"`` (chest lead). Numbered channels such as ``"ECG_1"`` or ``"EKG 2"``
    are generic channels, not leads I and II, and stay unknown.
    """
    s = re.sub(r"[\s_\-.]", "", str(name)).upper()
    if re.fullmatch(r"(ECG|EKG)\d+", s):
        return None
    s = re.sub(r"^(ECG|EKG)?(LEAD)?", "", s)
    if s.startswith("ML") and s[2:] in _ROMAN:  # MLII: modified limb lead
        s = s[2:]
    if s.startswith("D") and s[1:] in _ROMAN:  # DI, DII, DIII (European)
        s = s[1:]
    if s in _ROMAN:
        return _ROMAN[s]
    m = re.fullmatch(r"AV([RLF])", s)
    if m:
        return _AUGMENTED[m.group(1)]
    m = re.fullmatch(r"[VC]([1-6])", s)
    if m:
        return f"V{m.group(1)}"
    return None


def non_ecg_kind(name: str) -> str | None:
    """What a channel records when its name says it is not an ECG lead (``"pressure"``, ``"respiration"``...), else None.

    Decided by the words of the name (``"ABP"``, ``"Resp. Imp."``, ``"SpO2"``,
    ``"EDF Annotations"``); a name that also names a standard lead is an ECG lead.
    """
    if normalize_lead_name(name) is not None:
        return None
    for word in re.findall(r"[a-z]+\d*", str(name).lower()):
        kind = _NON_ECG_BY_WORD.get(word)
        if kind is not None:
            return kind
    return None


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """III, aVR, aVL, aVF from I and II (Einthoven's law and Goldberger's leads)."""
    return {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2.0,
        "aVL": lead_i - lead_ii / 2.0,
        "aVF": lead_ii - lead_i / 2.0,
    }


def _complete_limb_leads(present: dict[str, np.ndarray]) -> list[str]:
    """Add the missing limb leads to ``present`` (standard name -> row) from any two it has; returns those added.

    The six limb leads are combinations of two (I and II); any two of them are
    independent, so two recorded limb leads give the rest exactly.
    """
    have = [n for n in LIMB_LEADS if n in present]
    missing = [n for n in LIMB_LEADS if n not in present]
    if len(have) < 2 or not missing:
        return []
    a, b = ("I", "II") if {"I", "II"} <= set(have) else have[:2]
    weights = np.array([_LIMB_IN_I_II[a], _LIMB_IN_I_II[b]])
    rows = np.stack([np.asarray(present[a], dtype=np.float64), np.asarray(present[b], dtype=np.float64)])
    lead_i, lead_ii = np.linalg.solve(weights, rows)
    for n in missing:
        wi, wii = _LIMB_IN_I_II[n]
        present[n] = wi * lead_i + wii * lead_ii
    return missing


def _check_duplicates(names: list[str], source: str) -> None:
    """Two channels under one lead name would make the name ambiguous: an ECGError naming them."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ECGError(source, f"duplicate lead(s) {dupes} in {list(names)}")


def standardize_leads(signal: np.ndarray, names: list[str] | tuple[str, ...], source: str = "") -> tuple[np.ndarray, tuple[str, ...]]:
    """The 12 standard leads of ``signal`` (channels x samples) in ``STANDARD_LEADS`` order.

    Channels that name no standard lead are left out; duplicate leads are an
    error; missing limb leads are derived from any two recorded ones. Any other
    missing lead is an ECGError naming it. Returns float32 rows and ``STANDARD_LEADS``.
    """
    normalized = [normalize_lead_name(n) for n in names]
    _check_duplicates([n for n in normalized if n is not None], source)
    present = {n: signal[i] for i, n in enumerate(normalized) if n is not None}
    _complete_limb_leads(present)
    missing = [n for n in STANDARD_LEADS if n not in present]
    if missing:
        raise ECGError(source, f"missing lead(s) {missing} for the 12 standard leads; have {list(names)}")
    return np.stack([np.asarray(present[n], dtype=np.float32) for n in STANDARD_LEADS]), STANDARD_LEADS


def derived_leads(names: list[str] | tuple[str, ...]) -> list[str]:
    """Which standard leads ``standardize_leads`` would derive for these names."""
    have = {normalize_lead_name(n) for n in names}
    return [n for n in STANDARD_LEADS if n not in have]


def arrange_leads(signal: np.ndarray, names: list[str] | tuple[str, ...],
                  source: str = "") -> tuple[np.ndarray, tuple[str, ...], list[str], list[str]]:
    """The ECG channels as a reader returns them: (rows, lead names, extra leads, derived leads).

    Standard leads come first, in ``STANDARD_LEADS`` order and standard spelling;
    other channels follow in file order under their own names (the extra leads).
    A record holding V1-V6 and two limb leads is a 12-lead ECG stored as 8 leads
    (as devices store it): its missing limb leads are derived. Other sets are
    kept as they are (``ECG.standard12`` derives on demand). Duplicates are an error.
    """
    labels = [str(n).strip() or f"ch{i + 1}" for i, n in enumerate(names)]
    normalized = [normalize_lead_name(n) for n in labels]
    final = [s if s is not None else n for s, n in zip(normalized, labels)]
    _check_duplicates(final, source)
    present = {s: signal[i] for i, s in enumerate(normalized) if s is not None}
    derived = _complete_limb_leads(present) if set(PRECORDIAL_LEADS) <= set(present) else []
    extra = [n for s, n in zip(normalized, labels) if s is None]
    leads = tuple([n for n in STANDARD_LEADS if n in present] + extra)
    rows = [present[n] for n in STANDARD_LEADS if n in present] + [signal[i] for i, s in enumerate(normalized) if s is None]
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows]), leads, extra, derived
