"""GE MUSE XML exports (``<RestingECG>``): base64 little-endian int16 leads with the file's own scaling.

Each ``<Waveform>`` (``Rhythm``, ``Median``) holds ``<LeadData>`` blocks: the lead
name, the sample count, the amplitude per bit and its unit, and the samples. MUSE
usually stores 8 leads (I, II, V1-V6); III, aVR, aVL and aVF are then derived. The
device's measurements (``<RestingECGMeasurements>``) and diagnosis statements are
kept in ``metadata``.
"""
from __future__ import annotations

import os
from xml.etree.ElementTree import Element

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate, scale_channels_to_mv
from ._hospital import (beats_metadata, children_text, decode_base64, device_measurements, number, parse_xml,
                        patient_facts, pick_leads, stack_channels, text_of)
from .record import ECG

_UNITS = {"MICROVOLTS": "uV", "MILLIVOLTS": "mV", "VOLTS": "V"}
_MEASUREMENTS = {
    "heart_rate": ("VentricularRate",),
    "atrial_rate": ("AtrialRate",),
    "pr_interval_ms": ("PRInterval",),
    "qrs_duration_ms": ("QRSDuration",),
    "qt_ms": ("QTInterval",),
    "qtc_ms": ("QTCorrected",),
    "p_axis_deg": ("PAxis",),
    "axis_deg": ("RAxis",),
    "t_axis_deg": ("TAxis",),
}


def _waveform(wave: Element, source: str, kind: str) -> tuple[np.ndarray, list[str], list[str], float]:
    """(signal in mV, lead names, units as stated, sampling rate) of one ``<Waveform>``."""
    base, exponent = number(text_of(wave, "SampleBase")), number(text_of(wave, "SampleExponent") or 0)
    if base is None or base <= 0 or exponent is None or abs(exponent) > 6:
        raise ECGError(source, f"{kind} waveform: no valid SampleBase/SampleExponent (sampling rate)")
    rows, names, units = [], [], []
    for block in wave.findall("LeadData"):
        name = text_of(block, "LeadID") or f"lead {len(names) + 1}"
        what = f"{kind} waveform, lead {name}"
        raw = decode_base64(text_of(block, "WaveFormData"), source, what)
        count = number(text_of(block, "LeadSampleCountTotal"))
        size = number(text_of(block, "LeadSampleSize") or 2)
        if size != 2:
            raise ECGError(source, f"{what}: LeadSampleSize {text_of(block, 'LeadSampleSize')!r}; MUSE leads are 2-byte integers")
        if count is None or len(raw) != 2 * count:
            raise ECGError(source, f"{what}: {len(raw)} bytes of samples but LeadSampleCountTotal says {count}")
        per_bit = number(text_of(block, "LeadAmplitudeUnitsPerBit"))
        if per_bit is None or per_bit <= 0:
            raise ECGError(source, f"{what}: no valid LeadAmplitudeUnitsPerBit")
        stated = (text_of(block, "LeadAmplitudeUnits") or "").upper()
        if stated not in _UNITS:
            raise ECGError(source, f"{what}: amplitude unit {stated or '(none)'!r}; expected one of {sorted(_UNITS)}")
        rows.append(np.frombuffer(raw, dtype="<i2") * per_bit)
        names.append(name)
        units.append(_UNITS[stated])
    if not rows:
        raise ECGError(source, f"{kind} waveform holds no LeadData")
    signal = scale_channels_to_mv(stack_channels(rows, names, source, f"{kind} waveform"), units, source)
    return signal, names, units, base * 10.0 ** exponent


def _statements(root: Element) -> list[str]:
    """Diagnosis lines: ``StmtText`` fragments joined until a fragment flagged ENDSLINE."""
    block = root.find("Diagnosis")
    if block is None:
        block = root.find("OriginalDiagnosis")
    lines, current = [], []
    for stmt in [] if block is None else block.findall("DiagnosisStatement"):
        text = text_of(stmt, "StmtText")
        if text:
            current.append(text)
        if any((flag.text or "").strip().upper() == "ENDSLINE" for flag in stmt.findall("StmtFlag")) and current:
            lines.append(" ".join(current))
            current = []
    return lines + ([" ".join(current)] if current else [])


def read_muse(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read a GE MUSE RestingECG XML file into a 12-lead ECG in mV.

    The rhythm waveform is the signal; the median beats go to
    ``metadata["median_beats"]``, the device's measurements to
    ``metadata["device_measurements"]`` (ecglens names; ``device_measurements_raw``
    as stated), the diagnosis lines to ``metadata["device_statements"]``.
    """
    src = str(path)
    root = parse_xml(path)
    if root.tag != "RestingECG":
        raise ECGError(src, f"not a GE MUSE export: root element <{root.tag}>, expected <RestingECG>")
    waves = {}
    for wave in root.findall("Waveform"):
        waves.setdefault((text_of(wave, "WaveformType") or "").lower(), wave)
    if "rhythm" not in waves:
        raise ECGError(src, f"no Rhythm waveform (found {sorted(waves) or 'none'})")
    signal, found, units, rate = _waveform(waves["rhythm"], src, "Rhythm")
    check_rate(rate, sampling_rate, src)
    keep, names, ignored = pick_leads(found, leads, src)
    raw = children_text(root.find("RestingECGMeasurements"))
    metadata = {
        "format": "muse",
        "original_leads": found,
        "original_units": units,
        "ignored_channels": ignored,
        "device_measurements": device_measurements(raw, _MEASUREMENTS),
        "device_measurements_raw": raw,
        "device_statements": _statements(root),
    }
    if "median" in waves:
        median, median_names, _, median_rate = _waveform(waves["median"], src, "Median")
        metadata["median_beats"] = beats_metadata(median, median_rate, median_names, src)
    demographics = root.find("PatientDemographics")
    in_years = (text_of(demographics, "AgeUnits") or "YEARS").upper() == "YEARS"
    age = number(text_of(demographics, "PatientAge")) if in_years else None
    metadata.update(patient_facts(age, text_of(demographics, "Gender")))
    return build_ecg(signal[keep], rate, names, src, metadata)
