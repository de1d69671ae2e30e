"""Pieces the hospital export readers share (GE MUSE, Philips, HL7 aECG, DICOM, ISHNE).

Files are checked before they are opened (a regular file, under a size cap); XML is
parsed with defusedxml (no DTD fetched, no entity declared or expanded) and its
namespaces dropped, so readers match local names. Device measurements are mapped to
the names ecglens's own measurements use (``beats.measure``: ``pr_interval_ms``,
``qrs_duration_ms``, ``qt_ms``, ``qtc_ms``, ``axis_deg`` ...), so the two compare
key by key; the values as the file states them stay beside them.
"""
from __future__ import annotations

import base64
import binascii
import math
import os
import stat
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import numpy as np

from ..errors import ECGError
from ._common import select_channels
from .leads import standardize_leads

XML_SIZE_LIMIT = 64 * 2**20  # bytes; an ECG export is a few MB at most
_XML_SAFETY = {"forbid_dtd": False, "forbid_entities": True, "forbid_external": True}


def regular_file_size(path: str | os.PathLike, limit: int | None = None) -> int:
    """Size of ``path`` in bytes; refuses what is not a regular file (FIFO, device, directory) or exceeds ``limit``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ECGError(path, f"cannot open ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ECGError(path, "not a regular file")
    if limit is not None and st.st_size > limit:
        raise ECGError(path, f"file of {st.st_size} bytes exceeds the {limit // 2**20} MiB limit for this format")
    return st.st_size


def read_limited(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    regular_file_size(path, limit)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ECGError(path, f"cannot read ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise ECGError(path, f"file grew past the {limit // 2**20} MiB limit while being read")
    return data


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def parse_xml(path: str | os.PathLike, data: bytes | None = None) -> Element:
    """The root element of an XML ECG export (``data``: its bytes, if already read), namespaces dropped."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    if data is None:
        data = read_limited(path, XML_SIZE_LIMIT)
    try:
        root = fromstring(data, **_XML_SAFETY)
    except DefusedXmlException as exc:
        raise ECGError(path, f"XML refused: it declares entities or external references ({exc})") from exc
    except (ParseError, LookupError) as exc:  # LookupError: an encoding the declaration names but Python lacks
        raise ECGError(path, f"malformed XML ({exc})") from exc
    for elem in root.iter():
        if isinstance(elem.tag, str):
            elem.tag = _local(elem.tag)
        if any("}" in k for k in elem.attrib):
            elem.attrib = {_local(k): v for k, v in elem.attrib.items()}
    return root


def xml_root_name(path: str | os.PathLike) -> str:
    """Local name of the root element of an XML file, read only as far as that element."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import iterparse

    regular_file_size(path, XML_SIZE_LIMIT)
    try:
        with open(path, "rb") as fh:
            for _, elem in iterparse(fh, events=("start",), **_XML_SAFETY):
                return _local(elem.tag)
    except DefusedXmlException as exc:
        raise ECGError(path, f"XML refused: it declares entities or external references ({exc})") from exc
    except (ParseError, LookupError) as exc:  # LookupError: an encoding the declaration names but Python lacks
        raise ECGError(path, f"malformed XML ({exc})") from exc
    except OSError as exc:
        raise ECGError(path, f"cannot read ({exc.strerror or exc})") from exc
    raise ECGError(path, "XML without a root element")


def text_of(elem: Element | None, path: str) -> str | None:
    """Stripped text of the first element at ``path`` under ``elem``, or None when absent or empty."""
    found = None if elem is None else elem.find(path)
    text = None if found is None or found.text is None else found.text.strip()
    return text or None


def first_found(elem: Element, *paths: str) -> Element | None:
    """The first element found at any of ``paths`` (Elements without children are falsy, so ``or`` will not do)."""
    for path in paths:
        found = elem.find(path)
        if found is not None:
            return found
    return None


def number(text: Any) -> float | None:
    """``text`` as a finite float, or None."""
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def children_text(elem: Element | None) -> dict[str, str]:
    """Tag -> text of the direct children that hold text (a device's measurement block, as the file states it)."""
    if elem is None:
        return {}
    return {child.tag: child.text.strip() for child in elem if child.text and child.text.strip()}


def device_measurements(raw: dict[str, Any], names: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Device values under ecglens's measurement names: for each key the first of its ``names`` with a number."""
    out: dict[str, float] = {}
    for key, candidates in names.items():
        for name in candidates:
            value = number(raw.get(name))
            if value is not None:
                out[key] = value
                break
    return out


def stated_in_ms(raw: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Values of measurements stated as ``{"value", "unit"}``, with intervals stated in seconds turned into ms."""
    return {name: stated["value"] * (1000.0 if stated["unit"] == "s" else 1.0) for name, stated in raw.items()}


def decode_base64(text: str | None, source: str | os.PathLike, what: str) -> bytes:
    """Strict base64 (whitespace ignored); a missing, truncated or garbled block names ``what``."""
    if not text:
        raise ECGError(source, f"{what}: no waveform data")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ECGError(source, f"{what}: invalid or truncated base64 ({exc})") from exc


def patient_facts(age_years: float | None, sex: Any) -> dict[str, Any]:
    """``age`` (years) and ``sex`` (``"Male"``/``"Female"``, as PTB-XL facts spell it) when the file states them."""
    out: dict[str, Any] = {}
    if age_years is not None and age_years >= 0:
        out["age"] = int(age_years) if float(age_years).is_integer() else age_years
    spelled = {"M": "Male", "MALE": "Male", "F": "Female", "FEMALE": "Female"}.get(str(sex or "").strip().upper())
    if spelled:
        out["sex"] = spelled
    return out


def pick_leads(names: list[str], leads: list[str] | None, source: str | os.PathLike) -> tuple[list[int], list[str], list[dict[str, str]]]:
    """(indices, names, ignored channels as ``{"name", "reason"}``) of the channels to read.

    With ``leads`` every channel is used under those names; otherwise every ECG
    channel (standard leads and others such as V7 or X/Y/Z), the channels whose
    names say they record something else set aside (``_common.select_channels``).
    """
    if leads is not None:
        if len(leads) != len(names):
            raise ECGError(source, f"leads= names {len(leads)} channels but the file has {len(names)}: {names}")
        return list(range(len(names))), list(leads), []
    keep, ignored = select_channels(names, None, None, source)
    return keep, [names[i] for i in keep], ignored


def beats_metadata(signal_mv: np.ndarray, sampling_rate: float, names: list[str], source: str | os.PathLike) -> dict[str, Any]:
    """A device's median (representative) beats for ``metadata["median_beats"]``: the 12 standard leads in mV."""
    signal, leads = standardize_leads(np.asarray(signal_mv, dtype=np.float64), names, source=str(source))
    return {"leads": list(leads), "sampling_rate": float(sampling_rate), "units": "mV", "signal": signal}


def stack_channels(rows: list[np.ndarray], names: list[str], source: str | os.PathLike, what: str) -> np.ndarray:
    """Channels of one waveform as a (channels, samples) float64 array; they must share one length."""
    lengths = {name: len(row) for name, row in zip(names, rows)}
    if len(set(lengths.values())) > 1:
        raise ECGError(source, f"{what}: leads differ in length {lengths}")
    return np.stack([np.asarray(row, dtype=np.float64) for row in rows])


__all__ = [
    "XML_SIZE_LIMIT", "beats_metadata", "children_text", "decode_base64", "device_measurements",
    "first_found", "number", "patient_facts", "parse_xml", "pick_leads", "read_limited", "regular_file_size",
    "stack_channels", "stated_in_ms", "text_of", "xml_root_name",
]
