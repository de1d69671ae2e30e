"""Plain arrays: CSV tables and NumPy ``.npy`` files (values in mV unless ``units`` says otherwise; the rate must be given)."""
from __future__ import annotations

import csv
import io as _io
import os
import re
from pathlib import Path

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, unit_scale_to_mv
from ._hospital import regular_file_size
from .leads import STANDARD_LEADS, normalize_lead_name
from .record import ECG

_TIME_COLUMN = re.compile(r"^(t|time|times|timestamp|seconds?|secs?|s|ms|sample|samples|index|idx)(\W*\(?(s|ms|sec)\)?)?$")


def _is_time_column(name: str) -> bool:
    return bool(_TIME_COLUMN.match(re.sub(r"[\s_]", "", name.strip().lower())))


def _is_number(text: str, delimiter: str) -> bool:
    try:
        _number(text, delimiter)
    except ValueError:
        return False
    return True


def _sniff_delimiter(line: str) -> str:
    """Tab or semicolon when the first line has one (a comma is then a decimal comma), else comma."""
    return "\t" if "\t" in line else ";" if ";" in line else ","


def _number(text: str, delimiter: str) -> float:
    """A cell as a float; with a tab or semicolon delimiter a decimal comma (``-0,125``) is read too."""
    try:
        return float(text)
    except ValueError:
        if delimiter == ",":
            raise
        return float(text.replace(",", "."))


def _require_rate(sampling_rate: float | None, src: str, kind: str) -> float:
    if sampling_rate is None:
        raise ECGError(src, f"{kind} files carry no sampling rate; pass sampling_rate explicitly")
    if not (float(sampling_rate) > 0 and np.isfinite(float(sampling_rate))):
        raise ECGError(src, f"sampling_rate must be a positive number, got {sampling_rate!r}")
    return float(sampling_rate)


def _unit_scale(units: str | None, src: str) -> tuple[float, str]:
    """(factor to mV, what metadata says about the units) for the ``units`` a caller gave, or mV assumed."""
    if units is None:
        return 1.0, "mV (assumed)"
    scale = unit_scale_to_mv(units)
    if scale is None:
        raise ECGError(src, f"units must be uV, mV or V, got {units!r}")
    return scale, f"{units} (given)"


def read_csv(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None,
             units: str | None = None) -> ECG:
    """Read a CSV ECG: one column per lead, one row per sample, values in mV (or in ``units``: uV, mV, V).

    The first row is either lead names (any common spelling, e.g. ``I,II,...``,
    ``lead I``, ``AVR``, ``V-1``) or data; without a header there must be exactly
    12 columns in standard order (or as many as ``leads`` names). A time or index
    column (``time``, ``t``, ``seconds``, ``ms``, an unnamed first column) is
    dropped. Delimiter: comma, semicolon or tab; with a semicolon or tab, decimal
    commas (European exports: ``0,125;-0,5``) are read as decimal points. Columns
    named as other signals (``Resp``, ``SpO2``...) are set aside; other names are kept
    as leads under their names.
    """
    src = str(path)
    rate = _require_rate(sampling_rate, src, "CSV")
    scale, unit_note = _unit_scale(units, src)
    regular_file_size(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ECGError(src, f"cannot read CSV ({exc})") from exc
    delimiter = _sniff_delimiter(text.split("\n", 1)[0])
    try:
        rows = [r for r in csv.reader(_io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ECGError(src, f"malformed CSV ({exc})") from exc
    if not rows:
        raise ECGError(src, "empty CSV: no rows")
    first = [c.strip() for c in rows[0]]
    has_header = not all(_is_number(c, delimiter) for c in first)
    if has_header:
        keep = [i for i, name in enumerate(first) if not (_is_time_column(name) or (i == 0 and name == ""))]
        names = [first[i] for i in keep]
        body = rows[1:]
    else:
        keep = list(range(len(first)))
        names = list(STANDARD_LEADS)
        body = rows
    if leads is not None:
        names = list(leads)
    elif not has_header and len(first) != 12:
        raise ECGError(src, f"CSV without a header row must have 12 columns in standard order, found {len(first)}")
    data = np.empty((len(body), len(keep)), dtype=np.float64)
    for r, row in enumerate(body):
        if len(row) != len(first):
            raise ECGError(src, f"line {r + 1 + has_header}: {len(row)} columns, expected {len(first)}")
        try:
            data[r] = [_number(row[i], delimiter) for i in keep]
        except ValueError as exc:
            raise ECGError(src, f"line {r + 1 + has_header}: non-numeric value ({exc})") from exc
    metadata = {"format": "csv", "original_leads": names, "original_units": unit_note, "header_row": has_header,
                "delimiter": delimiter}
    with np.errstate(over="ignore"):  # overflow shows up as inf, which validation refuses
        return build_ecg(data.T * scale, rate, names, src, metadata)


def read_npy(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None,
             units: str | None = None) -> ECG:
    """Read a NumPy array in mV (or in ``units``: uV, mV, V): (leads, samples) or (samples, leads).

    Without ``leads`` one axis must have length 12 and hold the standard leads in
    order; an (n, 12) array with n != 12 is transposed. With ``leads`` the axis of
    that length holds the named channels.
    """
    src = str(path)
    rate = _require_rate(sampling_rate, src, "NPY")
    scale, unit_note = _unit_scale(units, src)
    regular_file_size(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for broken files
        raise ECGError(src, f"cannot read .npy ({type(exc).__name__}: {exc})") from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise ECGError(src, f"expected a 2-D array (leads, samples), got shape {getattr(arr, 'shape', None)}")
    if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise ECGError(src, f"expected a real numeric array, got dtype {arr.dtype}")
    names = list(leads) if leads is not None else list(STANDARD_LEADS)
    n = len(names)
    shape = list(arr.shape)
    if arr.shape[0] != n and arr.shape[1] == n:
        arr = arr.T
    elif arr.shape[0] != n:
        raise ECGError(src, f"array of shape {arr.shape} has no axis of length {n} for leads {names}")
    metadata = {"format": "npy", "original_leads": names, "original_units": unit_note, "original_shape": shape}
    with np.errstate(over="ignore"):  # overflow shows up as inf, which validation refuses
        return build_ecg(arr.astype(np.float64) * scale, rate, names, src, metadata)


def csv_looks_like_ecg(path: Path) -> bool:
    """False only for a readable CSV whose header names no lead (a metadata table)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError):
        return True
    delimiter = _sniff_delimiter(line)
    cells = [c.strip() for c in line.strip().split(delimiter)]
    if all(_is_number(c, delimiter) for c in cells):
        return True
    return any(normalize_lead_name(c) is not None for c in cells)


def npy_looks_like_ecg(path: Path) -> bool:
    """False only for a readable array that cannot be an ECG (not 2-D)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return True
    return isinstance(arr, np.ndarray) and arr.ndim == 2
