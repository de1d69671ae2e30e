"""WFDB records (PhysioNet ``.hea`` + signal files, e.g. PTB-XL); plain format-16 records read here, others via ``wfdb``.

Every file is checked before wfdb opens it: the header is a regular file of
reasonable size, each signal file a plain name beside it, a regular file holding
the bytes the header promises. The digital samples are compared with the header's
checksums and converted to mV here; channels that are not ECG leads are set aside.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ECGError
from ._common import (HEADER_SIZE_LIMIT, build_ecg, check_rate, checksum_metadata, compare_checksums, file_beside,
                      parse_age_sex, scale_channels_to_mv, select_channels)
from ._hospital import read_limited
from .record import ECG

if TYPE_CHECKING:
    import wfdb

# Bytes one sample of one signal occupies on disk, for the uncompressed formats.
_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "24": 3, "32": 4, "310": 4 / 3, "311": 4 / 3}


def wfdb_record_base(path: str | os.PathLike) -> Path:
    """The record path without extension: ``x/00001_lr.hea`` / ``.dat`` / ``x/00001_lr`` -> ``x/00001_lr``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in {".hea", ".dat", ".mat"} else p


def _header_path(base: Path) -> Path:
    """``x/rec`` -> ``x/rec.hea`` (a record name may hold dots, so no ``with_suffix``)."""
    return base.with_name(base.name + ".hea")


# A record line "name nsig fs nsamp" and signal lines written in full in format 16 with one sample per frame,
# no skew and no byte offset: "file 16 gain(baseline)/units adcres adczero initval checksum blocksize [description]"
# (PTB-XL and most PhysioNet 16-bit records). Such headers are parsed here; wfdb parses every other header.
_PLAIN_RECORD = re.compile(r"(?P<name>[^\s/]+)\s+(?P<n_sig>\d+)\s+(?P<fs>\d+(?:\.\d+)?)\s+(?P<sig_len>\d+)")
_PLAIN_SIGNAL = re.compile(
    r"(?P<file>[^\s/]+)\s+16\s+(?P<gain>\d+(?:\.\d+)?)\((?P<baseline>-?\d+)\)/(?P<units>\S+)\s+(?P<res>\d+)"
    r"\s+(?P<zero>-?\d+)\s+(?P<init>-?\d+)\s+(?P<checksum>-?\d+)\s+(?P<block>\d+)(?:\s+(?P<name>.*))?")


@dataclass
class PlainHeader:
    """A plain record's header fields, named as on ``wfdb.Record`` (wfdb, and pandas with it, is imported only
    for other records)."""

    record_name: str
    n_sig: int
    fs: float
    sig_len: int
    file_name: list[str]
    fmt: list[str]
    samps_per_frame: list[int]
    skew: list[None]
    byte_offset: list[None]
    adc_gain: list[float]
    baseline: list[int]
    units: list[str]
    adc_res: list[int]
    adc_zero: list[int]
    init_value: list[int]
    checksum: list[int]
    block_size: list[int]
    sig_name: list[str | None]
    comments: list[str]


def _plain_header(text: str) -> PlainHeader | None:
    """The header of a plain one-segment format-16 record (``_PLAIN_SIGNAL``), with the values
    ``wfdb.rdheader`` reads; None for any other header. wfdb's own parser costs about 15 ms a header (it looks
    fields up in pandas tables), which was most of the time of reading a PTB-XL record."""
    lines, comments = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            comments.append(line.strip(" \t#"))
        elif line:
            lines.append(line)
    head = _PLAIN_RECORD.fullmatch(lines[0]) if lines else None
    if head is None or int(head["n_sig"]) != len(lines) - 1 or not int(head["n_sig"]):
        return None
    signals = [_PLAIN_SIGNAL.fullmatch(line) for line in lines[1:]]
    if any(m is None or float(m["gain"]) == 0 for m in signals):
        return None
    n = len(signals)
    fs = float(head["fs"])
    return PlainHeader(
        record_name=head["name"], n_sig=n, fs=int(fs) if fs.is_integer() else fs, sig_len=int(head["sig_len"]),
        file_name=[m["file"] for m in signals], fmt=["16"] * n, samps_per_frame=[1] * n, skew=[None] * n,
        byte_offset=[None] * n, adc_gain=[float(m["gain"]) for m in signals],
        baseline=[int(m["baseline"]) for m in signals], units=[m["units"] for m in signals],
        adc_res=[int(m["res"]) for m in signals], adc_zero=[int(m["zero"]) for m in signals],
        init_value=[int(m["init"]) for m in signals], checksum=[int(m["checksum"]) for m in signals],
        block_size=[int(m["block"]) for m in signals], sig_name=[m["name"] or None for m in signals],
        comments=comments)


def _is_multi(rec) -> bool:
    if isinstance(rec, PlainHeader):
        return False
    import wfdb

    return isinstance(rec, wfdb.MultiRecord)


def read_wfdb_header(path: str | os.PathLike) -> PlainHeader | wfdb.Record | wfdb.MultiRecord:
    """Parse a WFDB header; a missing, special or oversized file or any parse failure is an ECGError naming it.

    The sampling frequency wfdb reads must be the number the record line states
    (wfdb reads ``1e12`` as 1 Hz). Plain format-16 headers are parsed here (``_plain_header``), the
    others by ``wfdb.rdheader``.
    """
    base = wfdb_record_base(path)
    header = _header_path(base)
    if not os.path.lexists(header):
        raise ECGError(header, "missing WFDB header file")
    text = read_limited(header, HEADER_SIZE_LIMIT).decode("utf-8", errors="replace")
    plain = _plain_header(text)
    if plain is not None:
        return plain
    import wfdb

    try:
        rec = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises assorted types for garbled headers
        raise ECGError(header, f"unreadable WFDB header ({type(exc).__name__}: {exc})") from exc
    fields = next((ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), [])
    if len(fields) > 2:
        stated = re.split(r"[/(]", fields[2])[0]
        try:
            agrees = math.isclose(float(stated), float(rec.fs))
        except ValueError:
            agrees = False
        if not agrees:
            raise ECGError(header, f"unreadable WFDB header: sampling frequency field {fields[2]!r} (read as {rec.fs:g} Hz)")
    return rec


def _check_signal_files(rec: PlainHeader | wfdb.Record | wfdb.MultiRecord, base: Path, src: str) -> None:
    """Each signal file (of each segment) must be a regular file holding the bytes the header promises."""
    if _is_multi(rec):
        for seg, length in zip(rec.seg_name or [], rec.seg_len or []):
            if seg != "~" and length:  # "~" is a gap; a 0-length segment is the layout header
                segment = file_beside(_header_path(base), f"{seg}.hea", "segment header").with_suffix("")
                _check_signal_files(read_wfdb_header(segment), segment, src)
        return
    if not rec.n_sig or len(rec.file_name or []) != rec.n_sig:
        raise ECGError(src, f"WFDB header announces {rec.n_sig or 0} signal(s) but describes {len(rec.file_name or [])}")
    files = {fname: file_beside(_header_path(base), fname, "signal file") for fname in rec.file_name}
    if rec.sig_len == 0 or (rec.sig_len is None and all(f.stat().st_size == 0 for f in files.values())):
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
        fpath = files[fname]
        expected = math.ceil(per_frame * rec.sig_len) + offsets.get(fname, 0)
        size = fpath.stat().st_size
        if size < expected:
            raise ECGError(fpath, f"truncated signal file: header promises {rec.sig_len} samples x "
                                  f"{per_frame:g} bytes/frame = {expected} bytes but the file holds {size}")
        if size - expected >= per_frame:
            raise ECGError(fpath, f"header/data mismatch: header describes {expected} bytes "
                                  f"({rec.n_sig} signals x {rec.sig_len} samples) but the file holds {size}")


def _read_single(base: Path, header: PlainHeader | wfdb.Record, src: str
                 ) -> tuple[list[np.ndarray], list[float], PlainHeader | wfdb.Record, tuple]:
    """(physical rows, per-channel rates, record, (sample sums, header checksums)) of a one-segment record.

    Read as digital samples without skew so the checksums cover the file as written;
    each skewed channel is then shifted and every row cut to the frames all channels have.
    """
    if _plain_layout(header):
        return _read_plain(base, header, src)
    import wfdb

    spf = [int(s or 1) for s in (header.samps_per_frame or [1] * header.n_sig)]
    expanded = any(s > 1 for s in spf)
    try:
        rec = wfdb.rdrecord(str(base), physical=False, smooth_frames=not expanded, ignore_skew=True, return_res=64)
        sums = rec.calc_checksum(expanded=expanded)
        physical = rec.dac(expanded=expanded, return_res=64, inplace=False)
    except Exception as exc:  # wfdb raises assorted types for damaged signal files
        raise ECGError(src, f"cannot read WFDB record ({type(exc).__name__}: {exc})") from exc
    rows = list(physical) if expanded else list(np.asarray(physical).T)
    if rec.sig_len is not None and any(len(row) != rec.sig_len * k for row, k in zip(rows, spf)):
        raise ECGError(src, f"header promises {rec.sig_len} samples but the data holds {sorted({len(r) for r in rows})}")
    skew = [int(s or 0) for s in (rec.skew or [0] * rec.n_sig)]
    frames = min(len(row) // k - s for row, k, s in zip(rows, spf, skew))
    if frames <= 0:
        raise ECGError(src, "empty signal: no sample left after aligning skewed channels")
    rows = [row[s * k:(s + frames) * k] for row, k, s in zip(rows, spf, skew)]
    return rows, [float(rec.fs) * k for k in spf], rec, (list(sums), list(rec.checksum or [None] * rec.n_sig))


def _plain_layout(header: PlainHeader | wfdb.Record) -> bool:
    """Every signal in one file in format 16, interleaved frame by frame from its first byte."""
    n = header.n_sig or 0
    return (n > 0 and header.sig_len is not None and len(set(header.file_name or [])) == 1
            and all(str(f) == "16" for f in header.fmt or [])
            and all(int(k or 1) == 1 for k in header.samps_per_frame or [1] * n)
            and not any(header.skew or []) and not any(header.byte_offset or []))


def _read_plain(base: Path, header: PlainHeader, src: str) -> tuple[list[np.ndarray], list[float], PlainHeader, tuple]:
    """``_read_single`` of a ``_plain_layout`` record with numpy: the same physical values as wfdb gives
    (``(digital - baseline) / gain``, WFDB's invalid value -32768 as NaN) and the same sample sums."""
    path = file_beside(_header_path(base), header.file_name[0], "signal file")
    digital = np.fromfile(path, dtype="<i2", count=header.sig_len * header.n_sig).reshape(header.sig_len, header.n_sig)
    sums = [int(v) % 65536 for v in digital.sum(axis=0, dtype=np.int64)]
    physical = (digital - np.asarray(header.baseline, dtype=np.float64)) / np.asarray(header.adc_gain, dtype=np.float64)
    physical[digital == -32768] = np.nan
    return list(physical.T), [float(header.fs)] * header.n_sig, header, (sums, list(header.checksum))


def _read_multi(base: Path, src: str) -> tuple[list[np.ndarray], list[float], wfdb.Record, None]:
    """(physical rows, rates, record, None: no checksums) of a multi-segment record, joined by wfdb."""
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base), physical=True, return_res=64)
    except Exception as exc:
        raise ECGError(src, f"cannot read WFDB record ({type(exc).__name__}: {exc})") from exc
    if rec.p_signal is None:
        raise ECGError(src, "WFDB record has no signal data")
    return list(np.asarray(rec.p_signal, dtype=np.float64).T), [float(rec.fs)] * rec.n_sig, rec, None


def _trim_invalid_edges(signal: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Cut the leading and trailing samples where some channel holds WFDB's invalid-sample value (NaN here)."""
    valid = np.flatnonzero(~np.isnan(signal).any(axis=0))
    if len(valid) == 0 or (valid[0] == 0 and valid[-1] == signal.shape[1] - 1):
        return signal, {}
    start, stop = int(valid[0]), int(valid[-1]) + 1
    return signal[:, start:stop], {"start": start, "end": signal.shape[1] - stop}


def read_wfdb(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read a WFDB record into an ECG in mV (its ECG leads; other channels set aside and listed).

    ``path`` may name the ``.hea``, the ``.dat`` or the bare record. ``leads``
    overrides the channel names the header gives; ``sampling_rate``, when given,
    must equal the ECG channels' rate (frame rate x samples per frame). Channels
    that are not ECG, or at another rate, go to ``metadata["ignored_channels"]``;
    checksum mismatches to ``metadata["checksum_mismatch"]`` and ``metadata["reader_flags"]``;
    invalid samples at the start or end are cut (``metadata["trimmed_invalid_samples"]``);
    header comments go to ``metadata["comments"]``.
    """
    base = wfdb_record_base(path)
    src = str(path)
    header = read_wfdb_header(base)
    _check_signal_files(header, base, src)
    multi = _is_multi(header)
    rows, rates, rec, checksums = _read_multi(base, src) if multi else _read_single(base, header, src)
    found = [str(n) if n else f"ch{i + 1}" for i, n in enumerate(rec.sig_name or [""] * len(rows))]
    if leads is not None and len(leads) != len(found):
        raise ECGError(src, f"leads= names {len(leads)} channels but the record has {len(found)}: {found}")
    names = list(leads) if leads is not None else found
    units = [u or "mV" for u in (rec.units or ["mV"] * len(rows))]
    keep, ignored = select_channels(names, units, rates, src)
    signal, trimmed = _trim_invalid_edges(np.stack([rows[i] for i in keep]).astype(np.float64))
    gaps = np.isnan(signal)
    if gaps.any():
        where = np.flatnonzero(gaps.any(axis=0))
        raise ECGError(src, f"{int(gaps.sum())} invalid sample(s) (WFDB's missing-value code) inside the record in lead(s) "
                            f"{[names[keep[i]] for i in np.flatnonzero(gaps.any(axis=1))]}, at sample(s) "
                            f"{', '.join(map(str, where[:5]))}{' ...' if len(where) > 5 else ''}")
    check_rate(rates[keep[0]], sampling_rate, src)
    signal = scale_channels_to_mv(signal, [units[i] for i in keep], src)
    comments = list(rec.comments or [])
    metadata = {
        "format": "wfdb",
        "record_name": rec.record_name,
        "original_leads": found,
        "original_units": units,
        "fmt": [str(f) for f in (rec.fmt or [])],
        "adc_gain": [float(g) for g in (rec.adc_gain or [])],
        "baseline": [int(b) for b in (rec.baseline or [])],
        "ignored_channels": ignored,
        "comments": comments,
        **parse_age_sex(comments),
    }
    if checksums is not None:
        metadata.update(checksum_metadata(compare_checksums(*checksums, found)))
    if trimmed:
        metadata["trimmed_invalid_samples"] = trimmed
        metadata["reader_flags"] = [*metadata.get("reader_flags", []), "invalid_samples_trimmed"]
    return build_ecg(signal, rates[keep[0]], [names[i] for i in keep], src, metadata)
