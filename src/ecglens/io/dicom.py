"""DICOM waveform ECGs (12-lead and general ECG storage) via ``pydicom``.

A file holds multiplex groups (``WaveformSequence``): the rhythm, often a median
beat. The rhythm group is chosen by its label (``RHYTHM``; groups labelled
median/beat are passed over), else it is the longest group. Each channel's samples
become ``stored * sensitivity * correction + baseline`` in the unit its sensitivity
units code names (uV, mV), then mV. Lead names come from the channel source code
meanings (``"Lead I (Einthoven)"``), falling back to the SCP-ECG/MDC lead numbers.
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate, scale_channels_to_mv, unit_scale_to_mv
from ._hospital import (beats_metadata, device_measurements, number, patient_facts, pick_leads, regular_file_size,
                        stated_in_ms)
from .leads import normalize_lead_name
from .record import ECG

DICOM_SIZE_LIMIT = 1024 * 2**20  # bytes; a 24-hour 12-lead Holter at 500 Hz in 16 bits is about 1 GiB
_DTYPES = {(8, "SB"): "i1", (8, "UB"): "u1", (16, "SS"): "i2", (16, "US"): "u2", (32, "SL"): "i4", (32, "UL"): "u4"}
_MEDIAN_WORDS = ("MEDIAN", "BEAT", "REPRESENTATIVE", "TEMPLATE")
# SCP-ECG (5.6.3-9-N) and MDC (2:N) number the leads alike.
_LEAD_NUMBERS = {1: "I", 2: "II", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
                 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6"}
_MEASUREMENTS = {
    "heart_rate": ("ventricular heart rate", "heart rate"),
    "rr_ms": ("rr interval",),
    "pr_interval_ms": ("pr interval",),
    "qrs_duration_ms": ("qrs duration",),
    "qt_ms": ("qt interval",),
    "qtc_ms": ("qtc interval",),
    "p_axis_deg": ("p axis",),
    "axis_deg": ("qrs axis",),
    "t_axis_deg": ("t axis",),
}


def _channel_name(channel: Any) -> str:
    """The lead a channel records, from its source code meaning, else its SCP-ECG/MDC code; else the meaning as is."""
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    if source is None:
        return "(no channel source)"
    meaning = str(source.get("CodeMeaning", "")).strip()
    lead = normalize_lead_name(re.sub(r"\(.*?\)", "", meaning))
    match = re.search(r"(?:^2:|-9-)(\d+)$", str(source.get("CodeValue", "")).strip())
    if lead is None and match:
        lead = _LEAD_NUMBERS.get(int(match.group(1)))
    return lead or meaning or str(source.get("CodeValue", ""))


def _channel_unit(channel: Any) -> str:
    units = (channel.get("ChannelSensitivityUnitsSequence") or [None])[0]
    return "" if units is None else str(units.get("CodeValue", "")).strip()


def _decode_group(group: Any, little_endian: bool, source: str, index: int) -> tuple[np.ndarray, list[str], list[str], float]:
    """(signal in the channels' units, channel names, units, rate) of one multiplex group."""
    what = f"waveform group {index} ({str(group.get('MultiplexGroupLabel', '')).strip() or 'unlabelled'})"
    n_channels, n_samples = int(group.get("NumberOfWaveformChannels", 0)), int(group.get("NumberOfWaveformSamples", 0))
    bits, kind = int(group.get("WaveformBitsAllocated", 0)), str(group.get("WaveformSampleInterpretation", ""))
    dtype = _DTYPES.get((bits, kind))
    if dtype is None:
        raise ECGError(source, f"{what}: {bits}-bit {kind!r} samples are not supported (expected SB/UB/SS/US/SL/UL)")
    rate = number(group.get("SamplingFrequency"))
    if rate is None or rate <= 0:
        raise ECGError(source, f"{what}: no valid SamplingFrequency")
    channels = list(group.get("ChannelDefinitionSequence") or [])
    if n_channels <= 0 or len(channels) != n_channels:
        raise ECGError(source, f"{what}: {n_channels} channels stated but {len(channels)} channel definitions")
    data = bytes(group.get("WaveformData") or b"")
    need = n_channels * n_samples * bits // 8
    if len(data) < need:
        raise ECGError(source, f"{what}: WaveformData holds {len(data)} bytes; {n_channels} channels x "
                               f"{n_samples} samples need {need}")
    stored = np.frombuffer(data[:need], dtype=("<" if little_endian else ">") + dtype).reshape(n_samples, n_channels).T
    rows, units = [], []
    for i, channel in enumerate(channels):
        sensitivity = number(channel.get("ChannelSensitivity"))
        correction = number(channel.get("ChannelSensitivityCorrectionFactor", 1)) or 1.0
        baseline = number(channel.get("ChannelBaseline", 0)) or 0.0
        rows.append(stored[i].astype(np.float64) * (sensitivity or 1.0) * correction + baseline)
        units.append(_channel_unit(channel) if sensitivity else "")  # no sensitivity: arbitrary units, not a voltage
    return np.stack(rows), [_channel_name(c) for c in channels], units, rate


def _leads(group: Any, little_endian: bool, source: str, index: int,
           leads: list[str] | None) -> tuple[np.ndarray, list[str], list[str], list[str], list[dict], float]:
    """(signal in mV, lead names, all channel names, their units, ignored channels, rate) of one group.

    Channels whose units are not a voltage, or (without ``leads``) whose names say
    they record no ECG, are left out and listed as ignored with the reason.
    """
    signal, found, units, rate = _decode_group(group, little_endian, source, index)
    voltage = [i for i, unit in enumerate(units) if unit_scale_to_mv(unit) is not None]
    keep, names, ignored = pick_leads([found[i] for i in voltage], leads, source)
    keep = [voltage[i] for i in keep]
    ignored += [{"name": found[i], "reason": f"unit {units[i]!r} is not a voltage"} for i in range(len(found)) if i not in voltage]
    return scale_channels_to_mv(signal[keep], [units[i] for i in keep], source), names, found, units, ignored, rate


def _choose_rhythm(groups: list[Any]) -> int:
    """Index of the rhythm group: labelled RHYTHM, else the longest group not labelled as a median beat."""
    labels = [str(g.get("MultiplexGroupLabel", "")).upper() for g in groups]
    rhythm = [i for i, label in enumerate(labels) if "RHYTHM" in label]
    if rhythm:
        return rhythm[0]
    others = [i for i, label in enumerate(labels) if not any(w in label for w in _MEDIAN_WORDS)] or list(range(len(groups)))
    return max(others, key=lambda i: int(groups[i].get("NumberOfWaveformSamples", 0)))


def _annotations(ds: Any) -> tuple[dict[str, Any], dict[str, float], list[str]]:
    """(measurements as stated, ecglens-named measurements, statements) from the waveform annotations."""
    raw: dict[str, Any] = {}
    statements = []
    for item in ds.get("WaveformAnnotationSequence") or []:
        text = str(item.get("UnformattedTextValue", "")).strip()
        if text:
            statements.append(text)
        concept = (item.get("ConceptNameCodeSequence") or [None])[0]
        value = number(item.get("NumericValue"))
        if concept is None or value is None:
            continue
        unit = (item.get("MeasurementUnitsCodeSequence") or [None])[0]
        raw.setdefault(str(concept.get("CodeMeaning", "")).strip(), {
            "value": value, "unit": "" if unit is None else str(unit.get("CodeValue", ""))})
    in_ms = {name.lower(): value for name, value in stated_in_ms(raw).items()}
    return raw, device_measurements(in_ms, _MEASUREMENTS), statements


def _age_years(text: Any) -> float | None:
    """DICOM age string ``nnnY`` in years (ages in days, weeks or months are left out)."""
    match = re.fullmatch(r"(\d{1,3})Y", str(text or "").strip())
    return float(match.group(1)) if match else None


def read_dicom(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read a DICOM ECG waveform file into an ECG in mV (its ECG leads, standard or not).

    Channels that record no ECG or no voltage are left out and listed in
    ``metadata["ignored_channels"]``; a median-beat group goes to
    ``metadata["median_beats"]``; the device's annotations to
    ``metadata["device_measurements"]`` (ecglens names; ``device_measurements_raw``
    as stated) and ``metadata["device_statements"]``.
    """
    import pydicom

    src = str(path)
    regular_file_size(path, DICOM_SIZE_LIMIT)
    try:
        return _record(pydicom.dcmread(path), src, sampling_rate, leads)
    except ECGError:
        raise
    except Exception as exc:  # pydicom raises assorted types, and parses values lazily: where a damaged one is used
        raise ECGError(src, f"unreadable or damaged DICOM file ({type(exc).__name__}: {exc})") from exc


def _record(ds: Any, src: str, sampling_rate: float | None, leads: list[str] | None) -> ECG:
    """The ECG in a parsed DICOM dataset (see ``read_dicom``)."""
    groups = list(ds.get("WaveformSequence") or [])
    if not groups:
        raise ECGError(src, "no WaveformSequence: not a DICOM waveform file")
    little_endian = ds.original_encoding[1] is not False
    index = _choose_rhythm(groups)
    signal, names, found, units, ignored, rate = _leads(groups[index], little_endian, src, index, leads)
    check_rate(rate, sampling_rate, src)
    raw, measured, statements = _annotations(ds)
    metadata = {
        "format": "dicom",
        "sop_class": str(getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", ""))),
        "waveform_group": index,
        "original_leads": found,
        "original_units": units,
        "ignored_channels": ignored,
        "device_measurements": measured,
        "device_measurements_raw": raw,
        "device_statements": statements,
        **patient_facts(_age_years(ds.get("PatientAge")), ds.get("PatientSex")),
    }
    medians = [i for i, g in enumerate(groups)
               if i != index and any(w in str(g.get("MultiplexGroupLabel", "")).upper() for w in _MEDIAN_WORDS)]
    if medians:
        beat, beat_names, *_, beat_rate = _leads(groups[medians[0]], little_endian, src, medians[0], None)
        metadata["median_beats"] = beats_metadata(beat, beat_rate, beat_names, src)
    return build_ecg(signal, rate, names, src, metadata)
