"""Checks and conversions every reader shares: units, channel selection, lead order, and validation of what is returned."""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ECGError
from .leads import arrange_leads, non_ecg_kind
from .record import ECG

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3}
MIN_RATE_HZ, MAX_RATE_HZ = 1.0, 100_000.0  # plausible sampling rates for an ECG
HEADER_SIZE_LIMIT = 2**20  # bytes; a WFDB or challenge header is a few kB


def unit_scale_to_mv(unit: str) -> float | None:
    """Factor that converts values in ``unit`` to millivolts, or None if ``unit`` is not a voltage."""
    key = re.sub(r"\s", "", str(unit)).lower()
    return _UNIT_TO_MV.get(key)


def scale_channels_to_mv(signal: np.ndarray, units: list[str], source: str | os.PathLike) -> np.ndarray:
    """Convert each channel (row) of ``signal`` from its physical unit to mV."""
    scales = []
    for i, unit in enumerate(units):
        scale = unit_scale_to_mv(unit)
        if scale is None:
            raise ECGError(source, f"channel {i} has physical unit {unit!r}; expected mV, uV or V")
        scales.append(scale)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as inf, which validation refuses
        return signal * np.asarray(scales, dtype=np.float64)[:, None]


def file_beside(header: Path, name: str, what: str) -> Path:
    """The file ``name`` (as a header states it) in the header's folder: a plain name, there, a regular file.

    A path instead of a name, a name over 255 bytes, a missing file or a special one
    (FIFO, device, directory) is an ECGError.
    """
    from ._hospital import regular_file_size

    if not name or name in {".", ".."} or any(c in name for c in "/\\\0"):
        raise ECGError(header, f"{what} name {name!r} is not a plain file name")
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        raise ECGError(header, f"{what} name of {len(name.encode('utf-8', 'surrogateescape'))} bytes; file names hold at most 255")
    path = header.parent / name
    if not os.path.lexists(path):
        raise ECGError(path, f"missing {what} named by header {header.name}")
    regular_file_size(path)
    return path


def select_channels(names: list[str], units: list[str] | None, rates: list[float] | None,
                    source: str | os.PathLike) -> tuple[list[int], list[dict[str, str]]]:
    """(indices of the ECG channels to read, the others set aside as ``{"name", "reason"}``).

    Set aside: a channel whose name says it records something else (pressure,
    respiration, annotations...), whose unit is not a voltage, or whose rate
    differs from the rate most ECG channels share (the higher one on a tie).
    Nothing left is an ECGError that lists every channel with its reason.
    """
    keep, ignored = [], []
    for i, name in enumerate(names):
        kind = non_ecg_kind(name)
        if kind is not None:
            ignored.append({"name": str(name), "reason": f"{kind} signal, not an ECG lead"})
        elif units is not None and unit_scale_to_mv(units[i]) is None:
            ignored.append({"name": str(name), "reason": f"unit {units[i]!r} is not a voltage"})
        else:
            keep.append(i)
    if keep and rates is not None:
        counts = Counter(float(rates[i]) for i in keep)
        rate = max(counts, key=lambda r: (counts[r], r))
        ignored += [{"name": str(names[i]), "reason": f"sampled at {rates[i]:g} Hz; the other ECG channels at {rate:g} Hz"}
                    for i in keep if float(rates[i]) != rate]
        keep = [i for i in keep if float(rates[i]) == rate]
    if not keep:
        found = "; ".join(f"{c['name']} ({c['reason']})" for c in ignored) or "none"
        raise ECGError(source, f"no ECG lead among the channels: {found}")
    return keep, ignored


def compare_checksums(sums: list[int], stated: list[int | None], names: list[str]) -> dict[str, dict[str, int]]:
    """Channels whose 16-bit sample sum differs from the header's checksum: name -> ``{"header", "data"}``."""
    return {str(name): {"header": int(want), "data": int(got) % 65536}
            for name, got, want in zip(names, sums, stated) if want is not None and (int(got) - int(want)) % 65536}


def checksum_metadata(mismatch: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Metadata for a checksum comparison: the mismatches and the ``reader_flags`` list that names them."""
    return {"checksum_mismatch": mismatch, "reader_flags": ["checksum_mismatch"] if mismatch else []}


def build_ecg(
    signal: np.ndarray,
    sampling_rate: float,
    names: list[str] | tuple[str, ...],
    source: str | os.PathLike,
    metadata: dict[str, Any],
    labels: tuple[str, ...] | None = None,
) -> ECG:
    """A validated ECG in mV from a (channels, samples) signal and its channel names.

    Channels whose names say they are not ECG are set aside and added to
    ``metadata["ignored_channels"]`` (after any the reader set aside); the rest are
    ordered by ``leads.arrange_leads``: standard leads first, other leads under their
    names (``metadata["extra_leads"]``), limb leads derived for an 8-lead 12-lead ECG
    (``metadata["derived_leads"]``). The result passes ``validate_ecg``.
    """
    src = str(source)
    signal = np.asarray(signal)
    if signal.ndim != 2 or signal.shape[0] == 0:
        raise ECGError(src, f"expected a (leads, samples) signal, got shape {signal.shape}")
    if len(names) != signal.shape[0]:
        raise ECGError(src, f"{signal.shape[0]} channels but {len(names)} lead names {list(names)}")
    if signal.shape[1] == 0:
        raise ECGError(src, "empty signal: 0 samples")
    keep, ignored = select_channels([str(n) for n in names], None, None, src)
    rows, leads, extra, derived = arrange_leads(signal[keep], [str(names[i]) for i in keep], source=src)
    meta = dict(metadata)
    meta["ignored_channels"] = list(meta.get("ignored_channels") or []) + ignored
    meta.update(extra_leads=extra, derived_leads=derived, n_samples=int(rows.shape[1]))
    ecg = ECG(signal=rows, sampling_rate=float(sampling_rate), leads=leads, units="mV", source=src, metadata=meta, labels=labels)
    return validate_ecg(ecg, src)


def validate_ecg(ecg: ECG, path: str | os.PathLike | None = None) -> ECG:
    """``ecg`` when it is a usable record, else an ECGError naming ``path`` (default: its source).

    Checks what every reader promises: a 2-D float32 signal with at least one lead
    and one sample, every value finite after the float32 cast (values beyond float32's
    range became inf), a sampling rate between ``MIN_RATE_HZ`` and ``MAX_RATE_HZ``,
    one distinct non-empty name per lead, and not every lead constant.
    """
    src = str(path if path is not None else ecg.source)
    sig = ecg.signal
    if not isinstance(sig, np.ndarray) or sig.dtype != np.float32 or sig.ndim != 2:
        raise ECGError(src, f"signal must be a 2-D float32 array, got {type(sig).__name__} {getattr(sig, 'dtype', '')}")
    if sig.shape[0] == 0 or sig.shape[1] == 0:
        raise ECGError(src, f"empty signal: shape {sig.shape}")
    rate = float(ecg.sampling_rate)
    if not (np.isfinite(rate) and MIN_RATE_HZ <= rate <= MAX_RATE_HZ):
        raise ECGError(src, f"implausible sampling rate {rate:g} Hz; expected {MIN_RATE_HZ:g} Hz to {MAX_RATE_HZ:g} Hz")
    names = [str(n).strip() for n in ecg.leads]
    if not all(names) or len(set(names)) != len(names):
        raise ECGError(src, f"lead names must be distinct and non-empty, got {list(ecg.leads)}")
    finite = np.isfinite(sig)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ECGError(src, f"signal holds {int((~finite).sum())} NaN/inf value(s) (missing samples, or beyond float32's "
                            f"range) in lead(s) {[ecg.leads[i] for i in bad_rows]}")
    if bool(np.all(sig.max(axis=1) == sig.min(axis=1))):
        raise ECGError(src, "flat signal: every lead is constant")
    return ecg


def check_rate(found: float, requested: float | None, source: str | os.PathLike) -> None:
    """A requested sampling rate must match the file's (readers never resample)."""
    if requested is not None and not np.isclose(float(found), float(requested)):
        raise ECGError(source, f"file is sampled at {found:g} Hz but sampling_rate={requested:g} was given (resample with preprocess instead)")


def parse_age_sex(comments: list[str]) -> dict[str, Any]:
    """``Age:``/``Sex:`` facts from header comment lines, when present."""
    out: dict[str, Any] = {}
    for line in comments:
        m = re.match(r"\s*(age|sex)\s*:\s*(.*?)\s*$", line, flags=re.IGNORECASE)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2)
        if key == "age":
            try:
                age = float(value)
            except ValueError:
                continue
            if np.isfinite(age) and age >= 0:
                out["age"] = int(age) if age.is_integer() else age
        elif value and value.lower() not in {"unknown", "nan", "none"}:
            out["sex"] = value
    return out


__all__ = ["HEADER_SIZE_LIMIT", "MAX_RATE_HZ", "MIN_RATE_HZ", "build_ecg", "check_rate", "checksum_metadata",
           "compare_checksums", "file_beside", "parse_age_sex", "scale_channels_to_mv", "select_channels", "unit_scale_to_mv",
           "validate_ecg"]
