"""Checks and conversions every reader shares: units, signal validity, lead order."""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..errors import ECGError
from .leads import derived_leads, standardize_leads
from .record import ECG

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3}


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
    return signal * np.asarray(scales, dtype=np.float64)[:, None]


def build_ecg(
    signal: np.ndarray,
    sampling_rate: float,
    names: list[str] | tuple[str, ...],
    source: str | os.PathLike,
    metadata: dict[str, Any],
    labels: tuple[str, ...] | None = None,
) -> ECG:
    """Validate a (channels, samples) signal in mV and return it as a standard 12-lead ECG.

    Rejects empty, non-finite and flat signals; reorders the leads to
    ``STANDARD_LEADS`` (deriving III/aVR/aVL/aVF from I and II when absent) and
    records which leads were derived in ``metadata["derived_leads"]``.
    """
    src = str(source)
    signal = np.asarray(signal)
    if signal.ndim != 2 or signal.shape[0] == 0:
        raise ECGError(src, f"expected a (leads, samples) signal, got shape {signal.shape}")
    if len(names) != signal.shape[0]:
        raise ECGError(src, f"{signal.shape[0]} channels but {len(names)} lead names {list(names)}")
    if signal.shape[1] == 0:
        raise ECGError(src, "empty signal: 0 samples")
    finite = np.isfinite(signal)
    if not finite.all():
        bad_rows = sorted({int(i) for i in np.nonzero(~finite)[0]})
        raise ECGError(src, f"signal holds {int((~finite).sum())} NaN/inf value(s) in lead(s) {[names[i] for i in bad_rows]}")
    if bool(np.all(signal.max(axis=1) == signal.min(axis=1))):
        raise ECGError(src, "flat signal: every lead is constant")
    out, leads = standardize_leads(signal, list(names), source=src)
    meta = dict(metadata)
    meta["derived_leads"] = derived_leads(names)
    meta["n_samples"] = int(out.shape[1])
    return ECG(signal=out, sampling_rate=float(sampling_rate), leads=leads, units="mV", source=src, metadata=meta, labels=labels)


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


__all__ = ["build_ecg", "check_rate", "parse_age_sex", "scale_channels_to_mv", "unit_scale_to_mv"]
