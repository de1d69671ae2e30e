"""Philips Sierra/PageWriter XML exports (``<restingecgdata>``, versions 1.03-1.04.02) via ``sierraecg``.

``sierraecg`` decodes the XLI-compressed leads (and rebuilds III, aVR, aVL, aVF,
which the file stores as residuals) as integers; they are scaled here by the
file's amplitude resolution (uV per unit). The device's measurements (the
interpretation's, else the measurement block's) and statements go to ``metadata``.
"""
from __future__ import annotations

import io
import os
from xml.etree.ElementTree import Element

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate
from ._hospital import (XML_SIZE_LIMIT, beats_metadata, children_text, device_measurements, first_found, number,
                        parse_xml, patient_facts, pick_leads, read_limited, stack_channels, text_of)
from .record import ECG

_UV_TO_MV = 1e-3
_BEAT_PADDING = 32767  # representative beats are stored in a fixed buffer filled up with 0x7FFF
# 1.04 interpretations state heartrate/print/qrsdur/qtint/qtcb; 1.03 and the measurement blocks the mean* names.
_MEASUREMENTS = {
    "heart_rate": ("heartrate", "meanventrate"),
    "atrial_rate": ("atrialrate",),
    "rr_ms": ("rrint",),
    "pr_interval_ms": ("print", "meanprint"),
    "qrs_duration_ms": ("qrsdur", "meanqrsdur"),
    "qt_ms": ("qtint", "meanqtint"),
    "qtc_ms": ("qtcb", "meanqtc"),
    "p_axis_deg": ("pfrontaxis",),
    "axis_deg": ("qrsfrontaxis",),
    "t_axis_deg": ("tfrontaxis",),
}


def _measurement_block(root: Element) -> Element | None:
    """The device's global measurements: the interpretation's (what the report printed), else the measurement block's."""
    return first_found(root, "interpretations/interpretation/globalmeasurements",
                       "interpretations/interpretation/interpretationmeasurements",
                       "internalmeasurements/crossleadmeasurements", "measurements/globalmeasurements")


def _statements(root: Element) -> list[str]:
    """Interpretation statements: the left text, with the right text (the criterion) in parentheses."""
    out = []
    for stmt in root.findall("interpretations/interpretation/statement"):
        left, right = text_of(stmt, "leftstatement"), text_of(stmt, "rightstatement")
        if left:
            out.append(f"{left} ({right})" if right else left)
    return out


def _resolution_uv(root: Element, source: str) -> float:
    """Amplitude resolution of the rhythm leads in uV per unit (1.04: on <parsedwaveforms>; 1.03: signal characteristics)."""
    waves = root.find("waveforms/parsedwaveforms")
    stated = None if waves is None else waves.get("resolution")
    if stated is None:
        stated = text_of(root, "dataacquisition/signalcharacteristics/resolution") or \
            text_of(root, "dataacquisition/signalcharacteristics/signalresolution")
    value = number(stated)
    if value is None or value <= 0:
        raise ECGError(source, f"no valid amplitude resolution in the file (found {stated!r})")
    return value


def _calibration_tail(signal: np.ndarray, rate: float) -> int:
    """Samples to cut from the end: the last second of a Philips rhythm holds the calibration pulse, not ECG.

    The pulse shows as samples where every lead reads the same positive value (1 mV);
    no ECG does that. Returns 0 when the last second has no such sample.
    """
    tail = signal[:, -int(round(rate)):]
    pulse = np.all(tail == tail[:1], axis=0) & (tail[0] > 0)
    return tail.shape[1] if signal.shape[1] > tail.shape[1] and bool(pulse.any()) else 0


def _unpadded(samples: np.ndarray) -> int:
    """Length of a representative beat without its trailing 0x7FFF fill."""
    real = np.nonzero(np.asarray(samples) != _BEAT_PADDING)[0]
    return int(real[-1]) + 1 if real.size else 0


def _age(root: Element) -> float | None:
    """Age in years: ``<age><years>`` (1.03); 1.04's ``defaultage`` attribute is a default, not the patient's age."""
    return number(text_of(root, "patient/generalpatientdata/age/years"))


def read_philips(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read a Philips Sierra XML file into a 12-lead ECG in mV.

    Representative beats go to ``metadata["median_beats"]`` (scaled by their own
    resolution), device measurements to ``metadata["device_measurements"]``
    (ecglens names; ``device_measurements_raw`` as stated) and the interpretation
    to ``metadata["device_statements"]``.
    """
    import sierraecg

    src = str(path)
    data = read_limited(path, XML_SIZE_LIMIT)
    root = parse_xml(path, data)
    if root.tag != "restingecgdata":
        raise ECGError(src, f"not a Philips export: root element <{root.tag}>, expected <restingecgdata>")
    resolution = _resolution_uv(root, src)
    try:
        decoded = sierraecg.read_file(io.BytesIO(data), include_repbeats=True)
    except Exception as exc:  # sierraecg raises its own errors, plus ValueError/IndexError/KeyError on damaged data
        raise ECGError(src, f"cannot decode the Philips waveforms ({type(exc).__name__}: {exc})") from exc
    if not decoded.leads:
        raise ECGError(src, "no leads in <parsedwaveforms>")
    found = [lead.label for lead in decoded.leads]
    rates = {float(lead.sampling_freq) for lead in decoded.leads}
    if len(rates) != 1 or min(rates) <= 0:
        raise ECGError(src, f"leads state sampling rates {sorted(rates)}; expected one positive rate")
    rate = rates.pop()
    check_rate(rate, sampling_rate, src)
    expected = {round(lead.duration * rate / 1000.0) for lead in decoded.leads}
    signal = stack_channels([lead.samples for lead in decoded.leads], found, src, "rhythm") * resolution * _UV_TO_MV
    if expected != {signal.shape[1]}:
        raise ECGError(src, f"decoded {signal.shape[1]} samples per lead but the file states {sorted(expected)}")
    cut = _calibration_tail(signal, rate)
    signal = signal[:, :signal.shape[1] - cut]
    keep, names, ignored = pick_leads(found, leads, src)
    block = _measurement_block(root)
    raw = children_text(block)
    metadata = {
        "format": "philips",
        "document": f"{decoded.doc_type} {decoded.doc_ver}",
        "original_leads": found,
        "original_units": f"{resolution:g} uV per unit",
        "calibration_samples_removed": cut,
        "ignored_channels": ignored,
        "device_measurements": device_measurements(raw, _MEASUREMENTS),
        "device_measurements_raw": raw,
        "device_statements": _statements(root),
        **patient_facts(_age(root), text_of(root, "patient/generalpatientdata/sex")),
    }
    beats = [b for b in decoded.repbeats.values() if b.resolution > 0 and b.sampling_freq > 0 and _unpadded(b.samples)]
    if beats:
        beat_names = [b.label for b in beats]
        length = max(_unpadded(b.samples) for b in beats)
        beat_signal = stack_channels([np.asarray(b.samples[:length]) * b.resolution * _UV_TO_MV for b in beats],
                                     beat_names, src, "representative beats")
        metadata["median_beats"] = beats_metadata(beat_signal, beats[0].sampling_freq, beat_names, src)
    return build_ecg(signal[keep], rate, names, src, metadata)
