"""WFDB records (PhysioNet ``.hea`` + signal files, e.g. PTB-XL) via the ``wfdb`` package."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import wfdb

from ..errors import ECGError
from ._common import build_ecg, check_rate, parse_age_sex, scale_channels_to_mv
from .record import ECG

# Bytes one sample of one signal occupies on disk, for the uncompressed formats.
_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "24": 3, "32": 4, "310": 4 / 3, "311": 4 / 3}


def wfdb_record_base(path: str | os.PathLike) -> Path:
    """The record path without extension: ``x/00001_lr.hea`` / ``.dat`` / ``x/00001_lr`` -> ``x/00001_lr``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in {".hea", ".dat", ".mat"} else p


def read_wfdb_header(path: str | os.PathLike) -> wfdb.Record:
    """Parse a WFDB header; any parse failure becomes an ECGError naming the file."""
    base = wfdb_record_base(path)
    header = base.with_name(base.name + ".hea")
    if not header.is_file():
        raise ECGError(header, "missing WFDB header file")
    try:
        return wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises assorted types for garbled headers
        raise ECGError(header, f"unreadable WFDB header ({type(exc).__name__}: {exc})") from exc


def _check_signal_files(rec: wfdb.Record, base: Path, src: str) -> None:
    """Each signal file must exist and hold the bytes the header promises; 0 samples is an error."""
    if getattr(rec, "n_seg", None) is not None or rec.file_name is None:
        return  # multi-segment records: wfdb checks each segment itself
    files = {base.parent / f for f in rec.file_name}
    for fpath in files:
        if not fpath.is_file():
            raise ECGError(fpath, f"missing signal file named by header {base.name}.hea")
    if rec.sig_len == 0 or (rec.sig_len is None and all(f.stat().st_size == 0 for f in files)):
        raise ECGError(src, "empty signal: 0 samples")
    if rec.sig_len is None:
        return
    frame_bytes: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for i, fname in enumerate(rec.file_name):
        bps = _BYTES_PER_SAMPLE.get(str(rec.fmt[i]))
        if bps is None:  # compressed (FLAC) formats: size says nothing
            frame_bytes[fname] = math.nan
            continue
        spf = rec.samps_per_frame[i] if rec.samps_per_frame else 1
        frame_bytes[fname] = frame_bytes.get(fname, 0.0) + bps * (spf or 1)
        offsets[fname] = int((rec.byte_offset[i] if rec.byte_offset else 0) or 0)
    for fname, per_frame in frame_bytes.items():
        if math.isnan(per_frame):
            continue
        fpath = base.parent / fname
        expected = math.ceil(per_frame * rec.sig_len) + offsets.get(fname, 0)
        size = fpath.stat().st_size
        if size < expected:
            raise ECGError(fpath, f"truncated signal file: header promises {rec.sig_len} samples x "
                                  f"{per_frame:g} bytes/frame = {expected} bytes but the file holds {size}")
        if size - expected >= per_frame:
            raise ECGError(fpath, f"header/data mismatch: header describes {expected} bytes "
                                  f"({rec.n_sig} signals x {rec.sig_len} samples) but the file holds {size}")


def read_wfdb(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read a WFDB record into a standard 12-lead ECG in mV.

    ``path`` may name the ``.hea``, the ``.dat`` or the bare record. ``leads``
    overrides the channel names the header gives; ``sampling_rate``, when given,
    must equal the header's. Header comments go to ``metadata["comments"]``.
    """
    base = wfdb_record_base(path)
    src = str(path)
    header = base.with_name(base.name + ".hea")
    if not header.is_file():
        raise ECGError(header, "missing WFDB header file")
    try:
        full = wfdb.rdrecord(str(base), physical=True, return_res=64)
    except Exception as exc:
        # wfdb's own messages are terse: name the actual problem where it can be found
        _check_signal_files(read_wfdb_header(base), base, src)
        raise ECGError(src, f"cannot read WFDB record ({type(exc).__name__}: {exc})") from exc
    _check_signal_files(full, base, src)
    if full.p_signal is None:
        raise ECGError(src, "WFDB record has no signal data")
    signal = np.asarray(full.p_signal, dtype=np.float64).T
    if signal.shape[0] != full.n_sig:
        raise ECGError(src, f"header names {full.n_sig} signals but the data holds {signal.shape[0]}")
    if full.sig_len is not None and signal.shape[1] != full.sig_len:
        raise ECGError(src, f"header promises {full.sig_len} samples but the data holds {signal.shape[1]}")
    check_rate(full.fs, sampling_rate, src)
    names = list(leads) if leads is not None else list(full.sig_name or [])
    units = list(full.units or ["mV"] * signal.shape[0])
    signal = scale_channels_to_mv(signal, units, src)
    comments = list(full.comments or [])
    metadata = {
        "format": "wfdb",
        "record_name": full.record_name,
        "original_leads": list(full.sig_name or []),
        "original_units": units,
        "fmt": [str(f) for f in (full.fmt or [])],
        "adc_gain": [float(g) for g in (full.adc_gain or [])],
        "baseline": [int(b) for b in (full.baseline or [])],
        "comments": comments,
        **parse_age_sex(comments),
    }
    return build_ecg(signal, full.fs, names, src, metadata)
