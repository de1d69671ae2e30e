"""Lead names: normalise any common spelling, reorder, derive missing limb leads."""
from __future__ import annotations

import re

import numpy as np

from ..errors import ECGError

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_DERIVED: tuple[str, ...] = ("III", "aVR", "aVL", "aVF")

_ROMAN = {"1": "I", "2": "II", "3": "III", "I": "I", "II": "II", "III": "III"}
_AUGMENTED = {"R": "aVR", "L": "aVL", "F": "aVF"}


def normalize_lead_name(name: str) -> str | None:
    """The standard spelling of a lead name, or None if it is not one of the 12.

    Accepts case variants and common decorations: ``"lead II"``, ``"DII"``,
    ``"MLII"``, ``"AVR"``, ``"avr"``, ``"aVR"``, ``"V-1"``, ``"v1"``, ``"C1"`` (chest lead).
    """
    s = re.sub(r"[\s_\-.]", "", str(name)).upper()
    s = re.sub(r"^(LEAD|ECG|EKG)", "", s)
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


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """III, aVR, aVL, aVF from I and II (Einthoven's law and Goldberger's leads)."""
    return {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2.0,
        "aVL": lead_i - lead_ii / 2.0,
        "aVF": lead_ii - lead_i / 2.0,
    }


def standardize_leads(signal: np.ndarray, names: list[str] | tuple[str, ...], source: str = "") -> tuple[np.ndarray, tuple[str, ...]]:
    """Reorder ``signal`` (leads x samples) to the 12 standard leads.

    Unknown extra channels are an error, as are duplicates and missing leads;
    the one exception is the limb set: with I and II present, any of III, aVR,
    aVL, aVF that are missing are derived. Returns the new signal and
    ``STANDARD_LEADS``; the caller records which leads were derived.
    """
    normalized = [normalize_lead_name(n) for n in names]
    unknown = [orig for orig, n in zip(names, normalized) if n is None]
    if unknown:
        raise ECGError(source, f"unrecognised lead name(s) {unknown}; expected the 12 standard leads")
    dupes = sorted({n for n in normalized if normalized.count(n) > 1})
    if dupes:
        raise ECGError(source, f"duplicate lead(s) {dupes} in {list(names)}")
    present = {n: signal[i] for i, n in enumerate(normalized)}
    missing = [n for n in STANDARD_LEADS if n not in present]
    if missing:
        derivable = set(missing) <= set(LIMB_DERIVED) and "I" in present and "II" in present
        if not derivable:
            raise ECGError(source, f"missing lead(s) {missing}; have {list(names)}")
        derived = derive_limb_leads(present["I"].astype(np.float64), present["II"].astype(np.float64))
        for n in missing:
            present[n] = derived[n]
    out = np.stack([np.asarray(present[n], dtype=np.float32) for n in STANDARD_LEADS])
    return out, STANDARD_LEADS


def derived_leads(names: list[str] | tuple[str, ...]) -> list[str]:
    """Which standard leads ``standardize_leads`` would derive for these names."""
    have = {normalize_lead_name(n) for n in names}
    return [n for n in STANDARD_LEADS if n not in have]
