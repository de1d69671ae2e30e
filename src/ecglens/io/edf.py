"""EDF/EDF+ files via ``edfio``: ECG channels picked by label, physical units converted to mV."""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate, scale_channels_to_mv
from .leads import normalize_lead_name
from .record import ECG


def edf_lead_name(label: str) -> str | None:
    """The standard lead an EDF signal label names, or None.

    EDF+ labels read ``"<type> <sensor>"``; ``"ECG II"``, ``"EKG V1"`` and plain
    ``"II"`` name leads, and so does ``"EEG II"`` (some exporters type every
    channel as EEG; no EEG electrode is called I-III, aVR/aVL/aVF or V1-V6).
    """
    return normalize_lead_name(re.sub(r"^\s*(ECG|EKG|EEG)\s+", "", label, flags=re.IGNORECASE))


def read_edf(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read the ECG leads of an EDF/EDF+ file into a 12-lead ECG in mV.

    Annotation channels are never signals here; other channels whose label names
    no ECG lead (respiration, SpO2...) are left out and listed in
    ``metadata["ignored_channels"]``. With ``leads`` every signal channel is used,
    named by ``leads`` in order. The ECG channels must share one sampling rate.
    """
    import edfio

    src = str(path)
    try:
        edf = edfio.read_edf(path)
        signals = list(edf.signals)
    except Exception as exc:  # edfio raises ValueError/IndexError/UnicodeDecodeError for broken files
        raise ECGError(src, f"unreadable EDF file ({type(exc).__name__}: {exc})") from exc
    labels = [s.label for s in signals]
    if leads is not None:
        if len(leads) != len(signals):
            raise ECGError(src, f"leads= names {len(leads)} channels but the file has {len(signals)}: {labels}")
        chosen, names, ignored = signals, list(leads), []
    else:
        chosen = [s for s in signals if edf_lead_name(s.label) is not None]
        names = [edf_lead_name(s.label) for s in chosen]
        ignored = [s.label for s in signals if edf_lead_name(s.label) is None]
    if not chosen:
        raise ECGError(src, f"no ECG lead among the EDF signal labels {labels}")
    rates = sorted({float(s.sampling_frequency) for s in chosen})
    if len(rates) > 1:
        detail = {s.label: float(s.sampling_frequency) for s in chosen}
        raise ECGError(src, f"ECG channels have differing sampling rates {detail}; expected one rate")
    check_rate(rates[0], sampling_rate, src)
    lengths = {len(s.data) for s in chosen}
    if len(lengths) > 1:
        raise ECGError(src, f"ECG channels have differing lengths {sorted(lengths)}")
    signal = np.stack([np.asarray(s.data, dtype=np.float64) for s in chosen])
    units = [s.physical_dimension.strip() for s in chosen]
    signal = scale_channels_to_mv(signal, units, src)
    metadata = {
        "format": "edf",
        "original_leads": [s.label for s in chosen],
        "original_units": units,
        "ignored_channels": ignored,
        "patient": edf.local_patient_identification.strip(),
        "recording": edf.local_recording_identification.strip(),
    }
    return build_ecg(signal, rates[0], names, src, metadata)
