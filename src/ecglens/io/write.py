"""Writing an ECG to WFDB, EDF or CSV, chosen by the output suffix; every file is written atomically.

WFDB (``x.hea`` + ``x.dat``, format 16, gain chosen by wfdb from the signal range,
age and sex as ``Age:``/``Sex:`` comments), EDF (16-bit, one signal per lead in mV,
physical range rounded outward to what EDF's 8-character fields hold) and CSV (a
``time_s`` column and one column per lead in mV). The readers read all three back.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_bytes_atomic
from ..errors import ECGError
from .record import ECG

_EDF_FIELD = 8  # characters in an EDF header number field


def write_wfdb(ecg: ECG, path: str | os.PathLike) -> list[Path]:
    """``path`` (``name.hea``) and its ``name.dat`` beside it; the ``.dat`` is in place before the header names it."""
    import wfdb

    out = Path(path)
    comments = [f"{key.capitalize()}: {ecg.metadata[key]}" for key in ("age", "sex") if ecg.metadata.get(key) is not None]
    comments.append(f"Converted by ecglens from {Path(ecg.source).name or 'an ECG'}")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".ecglens-wfdb-") as tmp:
        try:
            wfdb.wrsamp(out.stem, fs=float(ecg.sampling_rate), units=["mV"] * len(ecg.leads), sig_name=list(ecg.leads),
                        p_signal=ecg.signal.T.astype(np.float64), fmt=["16"] * len(ecg.leads), comments=comments,
                        write_dir=tmp)
        except Exception as exc:  # wfdb raises ValueError/TypeError for names and values it cannot write
            raise ECGError(out, f"cannot write WFDB ({type(exc).__name__}: {exc})") from exc
        written = []
        for suffix in (".dat", ".hea"):
            written.append(write_bytes_atomic(out.with_suffix(suffix), (Path(tmp) / f"{out.stem}{suffix}").read_bytes()))
    return written


def _edf_bound(value: float, upward: bool, path: Path) -> float:
    """``value`` rounded outward to the most decimals an 8-character EDF field holds."""
    for decimals in range(3, -1, -1):
        scaled = value * 10 ** decimals
        bound = (math.ceil(scaled) if upward else math.floor(scaled)) / 10 ** decimals
        if len(f"{bound:.{decimals}f}") <= _EDF_FIELD:
            return bound
    raise ECGError(path, f"amplitude {value:g} mV does not fit an EDF header field")


def _edf_record_duration(n_samples: int, rate: float, path: Path) -> float:
    """A data-record duration that divides the record exactly: 1 s when possible, else the whole record."""
    if float(rate).is_integer() and n_samples % int(rate) == 0:
        return 1.0
    whole = n_samples / rate
    text = f"{whole:.{_EDF_FIELD}g}"
    if len(text) <= _EDF_FIELD and float(text) * rate == n_samples:
        return float(text)
    raise ECGError(path, f"EDF cannot hold {n_samples} samples at {rate:g} Hz exactly (no data-record duration "
                         f"fits its 8-character field); write WFDB or CSV instead")


def write_edf(ecg: ECG, path: str | os.PathLike) -> list[Path]:
    """``path`` as EDF: one 16-bit signal per lead, labelled ``ECG <lead>``, in mV."""
    import edfio

    out = Path(path)
    signals = []
    for lead, row in zip(ecg.leads, ecg.signal.astype(np.float64)):
        low, high = _edf_bound(float(row.min()), False, out), _edf_bound(float(row.max()), True, out)
        if high <= low:
            low, high = low - 1.0, high + 1.0
        signals.append(edfio.EdfSignal(row, ecg.sampling_rate, label=f"ECG {lead}", physical_dimension="mV",
                                       physical_range=(low, high)))
    edf = edfio.Edf(signals, data_record_duration=_edf_record_duration(ecg.n_samples, ecg.sampling_rate, out))
    with atomic_write(out, "wb") as fh:
        edf.write(fh)
    return [out]


def write_csv(ecg: ECG, path: str | os.PathLike) -> list[Path]:
    """``path`` as CSV: ``time_s`` and one column per lead in mV, one row per sample."""
    out = Path(path)
    time = np.arange(ecg.n_samples, dtype=np.float64) / ecg.sampling_rate
    table = np.column_stack([time, ecg.signal.T.astype(np.float64)])
    with atomic_write(out, "w", newline="") as fh:
        np.savetxt(fh, table, delimiter=",", fmt="%.6f", header=",".join(["time_s", *ecg.leads]), comments="")
    return [out]


_WRITERS = {".hea": write_wfdb, ".edf": write_edf, ".csv": write_csv}


def output_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that its suffix names a format ``write_ecg`` writes."""
    out = Path(path)
    if out.suffix.lower() not in _WRITERS:
        raise ECGError(out, f"unsupported output type {out.suffix or '(no suffix)'!r}; use {', '.join(_WRITERS)}")
    return out


def write_ecg(ecg: ECG, path: str | os.PathLike) -> list[Path]:
    """Write ``ecg`` in the format the suffix of ``path`` names (creating its folder); returns the files written."""
    out = output_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _WRITERS[out.suffix.lower()](ecg, out)
