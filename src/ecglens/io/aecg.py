"""HL7 annotated ECG (aECG, the FDA's XML: ``<AnnotatedECG>``).

A ``<series>`` (code ``RHYTHM``) holds a ``<sequenceSet>``: one time sequence whose
``<increment>`` gives the sampling interval, and one sequence per lead (code
``MDC_ECG_LEAD_*``) whose value is ``origin + scale * digits`` in the units of its
``<origin>``/``<scale>``. Representative beats come as a derived series
(``REPRESENTATIVE_BEAT``) and go to ``metadata``, as do the annotated measurements
(``MDC_ECG_TIME_PD_*``, ``MDC_ECG_ANGLE_*``) and interpretation statements.
"""
from __future__ import annotations

import os
from typing import Any
from xml.etree.ElementTree import Element

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate, unit_scale_to_mv
from ._hospital import (beats_metadata, device_measurements, number, parse_xml, patient_facts, pick_leads,
                        stack_channels, stated_in_ms)
from .record import ECG

_LEAD_PREFIX = "MDC_ECG_LEAD_"
_TIME_UNITS = {"s": 1.0, "ms": 1e-3}
_MEASUREMENTS = {
    "heart_rate": ("MDC_ECG_HEART_RATE",),
    "rr_ms": ("MDC_ECG_TIME_PD_RR",),
    "pr_interval_ms": ("MDC_ECG_TIME_PD_PR",),
    "qrs_duration_ms": ("MDC_ECG_TIME_PD_QRS",),
    "qt_ms": ("MDC_ECG_TIME_PD_QT",),
    "qtc_ms": ("MDC_ECG_TIME_PD_QTc", "MDC_ECG_TIME_PD_QTcB"),
    "p_axis_deg": ("MDC_ECG_ANGLE_P_FRONT",),
    "axis_deg": ("MDC_ECG_ANGLE_QRS_FRONT",),
    "t_axis_deg": ("MDC_ECG_ANGLE_T_FRONT",),
}
_STATEMENT = "MDC_ECG_INTERPRETATION_STATEMENT"


def _code(elem: Element) -> str:
    found = elem.find("code")
    return "" if found is None else found.get("code", "")


def _quantity_mv(elem: Element | None, source: str, what: str) -> float:
    """A physical quantity (``value``, ``unit``) in mV."""
    value = None if elem is None else number(elem.get("value"))
    scale = None if elem is None else unit_scale_to_mv(elem.get("unit", ""))
    if value is None or scale is None:
        shown = None if elem is None else dict(elem.attrib)
        raise ECGError(source, f"{what}: expected a value in uV/mV/V, found {shown}")
    return value * scale


def _sequence_set(seqset: Element, source: str, kind: str) -> tuple[np.ndarray, list[str], float]:
    """(signal in mV, lead names, sampling rate) of one ``<sequenceSet>``."""
    rows, names, interval = [], [], None
    for seq in seqset.findall("component/sequence"):
        code, value = _code(seq), seq.find("value")
        if value is None:
            raise ECGError(source, f"{kind} sequence {code or '(no code)'} has no value")
        if code.startswith("TIME_"):
            step = value.find("increment")
            seconds = None if step is None else number(step.get("value"))
            factor = None if step is None else _TIME_UNITS.get(step.get("unit", "s"))
            if seconds is None or factor is None or seconds <= 0:
                raise ECGError(source, f"{kind} time sequence: no valid increment (found "
                                       f"{None if step is None else dict(step.attrib)})")
            interval = seconds * factor
            continue
        name = code[len(_LEAD_PREFIX):] if code.startswith(_LEAD_PREFIX) else code
        what = f"{kind} lead {name}"
        origin = _quantity_mv(value.find("origin"), source, f"{what} origin")
        scale = _quantity_mv(value.find("scale"), source, f"{what} scale")
        digits = (value.findtext("digits") or "").split()
        try:
            numbers = np.array(digits, dtype=np.float64)
        except ValueError as exc:
            raise ECGError(source, f"{what}: non-numeric digits ({exc})") from exc
        if numbers.size == 0:
            raise ECGError(source, f"{what}: no digits")
        rows.append(origin + scale * numbers)
        names.append(name)
    if interval is None:
        raise ECGError(source, f"{kind}: no time sequence, so no sampling rate")
    if not rows:
        raise ECGError(source, f"{kind}: no lead sequences")
    rate = 1.0 / interval
    if not np.isfinite(rate):
        raise ECGError(source, f"{kind}: time increment {interval:g} s gives no finite sampling rate")
    rate = float(round(rate)) if abs(rate - round(rate)) < 1e-6 * rate else rate
    return stack_channels(rows, names, source, kind), names, rate


def _annotations(series: Element) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(code -> stated value and unit, statements) of every annotation in the series and its derived series."""
    raw: dict[str, dict[str, Any]] = {}
    statements = []
    for annotation in series.iter("annotation"):
        code, value = _code(annotation), annotation.find("value")
        if value is None or not code:
            continue
        if code == _STATEMENT and (value.text or "").strip():
            statements.append(value.text.strip())
        elif number(value.get("value")) is not None:
            raw.setdefault(code, {"value": number(value.get("value")), "unit": value.get("unit", "")})
    return raw, statements


def read_aecg(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read an HL7 aECG XML file into an ECG in mV.

    The first RHYTHM series is the signal (the first series when none says RHYTHM);
    leads other than the 12 standard ones (V7, X/Y/Z...) are kept under their names
    and listed in ``metadata["extra_leads"]``.
    """
    src = str(path)
    root = parse_xml(path)
    if root.tag != "AnnotatedECG":
        raise ECGError(src, f"not an HL7 aECG file: root element <{root.tag}>, expected <AnnotatedECG>")
    series = root.findall("component/series")
    if not series:
        raise ECGError(src, "no <series> in the file")
    chosen = next((s for s in series if _code(s) == "RHYTHM"), series[0])
    seqset = chosen.find("component/sequenceSet")
    if seqset is None:
        raise ECGError(src, "the rhythm series has no <sequenceSet>")
    signal, found, rate = _sequence_set(seqset, src, "rhythm")
    check_rate(rate, sampling_rate, src)
    keep, names, ignored = pick_leads(found, leads, src)
    raw, statements = _annotations(chosen)
    metadata = {
        "format": "aecg",
        "original_leads": found,
        "original_units": "origin + scale x digits, converted to mV",
        "ignored_channels": ignored,
        "device_measurements": device_measurements(stated_in_ms(raw), _MEASUREMENTS),
        "device_measurements_raw": raw,
        "device_statements": statements,
        **patient_facts(None, next((g.get("code") for g in root.iter("administrativeGenderCode")), None)),
    }
    beats = next((d for d in chosen.findall("derivation/derivedSeries") if _code(d) == "REPRESENTATIVE_BEAT"), None)
    beat_set = None if beats is None else beats.find("component/sequenceSet")
    if beat_set is not None:
        beat, beat_names, beat_rate = _sequence_set(beat_set, src, "representative beat")
        metadata["median_beats"] = beats_metadata(beat, beat_rate, beat_names, src)
    return build_ecg(signal[keep], rate, names, src, metadata)
