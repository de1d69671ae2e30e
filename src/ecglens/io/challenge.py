"""PhysioNet/CinC 2020-2021 challenge records: ``.mat`` (key ``val``, ADC units) + WFDB-style ``.hea``.

The header carries per-lead gain, baseline and units and comment lines
``#Age:``, ``#Sex:`` and ``#Dx:`` (comma-separated SNOMED-CT codes), which are
mapped to PTB-XL SCP statements with the bundled table (``io.snomed``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ECGError
from ._common import (HEADER_SIZE_LIMIT, build_ecg, check_rate, checksum_metadata, compare_checksums, file_beside,
                      parse_age_sex, scale_channels_to_mv, select_channels)
from ._hospital import read_limited
from .record import ECG
from .snomed import map_snomed

# gain[(baseline)][/units], e.g. "1000/mV", "1000.0(0)/mV", "200"
_GAIN = re.compile(r"^([-+0-9.eE]+)(?:\(([-+0-9]+)\))?(?:/(.*))?$")


@dataclass
class ChallengeHeader:
    """What a challenge ``.hea`` says: record facts, one entry per signal, and comments.

    ``n_samples`` is None when the record line omits it (the ``.mat`` then decides).
    """

    record_name: str
    n_sig: int
    fs: float
    n_samples: int | None
    file_names: list[str] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    checksums: list[int | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def challenge_header_path(path: str | os.PathLike) -> Path:
    """The ``.hea`` of a challenge record given as ``.hea``, ``.mat`` or bare name."""
    p = Path(path)
    return p.with_suffix(".hea") if p.suffix.lower() in {".hea", ".mat"} else Path(str(p) + ".hea")


def parse_challenge_header(header: str | os.PathLike) -> ChallengeHeader:
    """Parse a challenge header; any malformed line is an ECGError naming the file and line."""
    header = Path(header)
    text = read_limited(header, HEADER_SIZE_LIMIT).decode("utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    if not body:
        raise ECGError(header, "unreadable header: no record line")
    rec = body[0].split()
    try:
        if len(rec) < 3:
            raise ValueError("expected '<record> <signals> <rate> [<samples>]'")
        h = ChallengeHeader(
            record_name=re.sub(r"\.mat$", "", rec[0], flags=re.IGNORECASE),
            n_sig=int(rec[1]),
            fs=float(rec[2].split("/")[0]),
            n_samples=int(rec[3]) if len(rec) > 3 else None,
            comments=comments,
        )
    except ValueError as exc:
        raise ECGError(header, f"unreadable header record line {body[0]!r} ({exc})") from exc
    if h.n_sig <= 0 or not h.fs > 0 or (h.n_samples is not None and h.n_samples < 0):
        raise ECGError(header, f"unreadable header record line {body[0]!r}: non-positive count or rate")
    if len(body) - 1 != h.n_sig:
        raise ECGError(header, f"header announces {h.n_sig} signals but has {len(body) - 1} signal lines")
    for ln in body[1:]:
        parts = ln.split()
        try:
            if len(parts) < 3:
                raise ValueError("expected '<file> <format> <gain>[/units] ...'")
            m = _GAIN.match(parts[2])
            if not m:
                raise ValueError(f"bad gain field {parts[2]!r}")
            gain = float(m.group(1)) or 200.0  # WFDB: a zero gain means the default 200
            adc_zero = int(parts[4]) if len(parts) > 4 else 0
            h.file_names.append(parts[0])
            h.gains.append(gain)
            h.baselines.append(int(m.group(2)) if m.group(2) is not None else adc_zero)
            h.units.append(m.group(3) or "mV")
            h.checksums.append(int(parts[6]) if len(parts) > 6 else None)
            h.names.append(" ".join(parts[8:]) if len(parts) > 8 else f"ch{len(h.names)}")
        except ValueError as exc:
            raise ECGError(header, f"unreadable header signal line {ln!r} ({exc})") from exc
    return h


def read_challenge(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read a challenge record (``.hea``, ``.mat`` or bare name) into an ECG in mV (its ECG leads).

    Channels that are not ECG leads (e.g. a unit of 'NU') go to ``metadata["ignored_channels"]``;
    checksum mismatches to ``metadata["checksum_mismatch"]`` and ``metadata["reader_flags"]``.
    ``labels`` are the PTB-XL statements the ``#Dx`` SNOMED-CT codes map to
    (``()`` when none map; ``None`` without a ``#Dx`` line); the raw codes are in
    ``metadata["snomed"]`` and the unmapped ones in ``metadata["snomed_unmapped"]``.
    """
    import scipy.io

    src = str(path)
    header = challenge_header_path(path)
    if not os.path.lexists(header):
        raise ECGError(src, f"missing header file {header.name}")
    h = parse_challenge_header(header)
    mat = file_beside(header, h.file_names[0], "signal file")
    try:
        contents = scipy.io.loadmat(str(mat))
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError for broken files
        raise ECGError(mat, f"unreadable .mat file ({type(exc).__name__}: {exc})") from exc
    if "val" not in contents:
        raise ECGError(mat, f"no 'val' array in .mat (keys: {sorted(k for k in contents if not k.startswith('__'))})")
    val = np.asarray(contents["val"])
    if val.ndim != 2 or not np.issubdtype(val.dtype, np.number):
        raise ECGError(mat, f"'val' must be a 2-D numeric array, got shape {val.shape} dtype {val.dtype}")
    if val.shape != (h.n_sig, val.shape[1] if h.n_samples is None else h.n_samples):
        raise ECGError(mat, f"header/data mismatch: header {header.name} promises {h.n_sig} signals x "
                            f"{h.n_samples} samples but 'val' has shape {val.shape}")
    check_rate(h.fs, sampling_rate, src)
    names = list(leads) if leads is not None else h.names
    if len(names) != h.n_sig:
        raise ECGError(src, f"leads= names {len(names)} channels but the record has {h.n_sig}: {h.names}")
    keep, ignored = select_channels(names, h.units, None, src)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow shows up as inf, which validation refuses
        signal = ((val[keep].astype(np.float64) - np.asarray(h.baselines, dtype=np.float64)[keep, None])
                  / np.asarray(h.gains, dtype=np.float64)[keep, None])
    signal = scale_channels_to_mv(signal, [h.units[i] for i in keep], src)
    sums = [int(row.sum()) for row in val.astype(np.int64)] if np.issubdtype(val.dtype, np.integer) else None
    metadata = {
        "format": "challenge",
        "record_name": h.record_name,
        "original_leads": list(h.names),
        "original_units": list(h.units),
        "adc_gain": list(h.gains),
        "baseline": list(h.baselines),
        "ignored_channels": ignored,
        "comments": list(h.comments),
        **parse_age_sex(h.comments),
    }
    if sums is not None:
        metadata.update(checksum_metadata(compare_checksums(sums, h.checksums, h.names)))
    labels = None
    dx = [c for c in h.comments if re.match(r"dx\s*:", c, flags=re.IGNORECASE)]
    if dx:
        codes = [c.strip() for line in dx for c in line.split(":", 1)[1].split(",") if c.strip()]
        labels, unmapped = map_snomed(codes)
        metadata["snomed"] = codes
        metadata["snomed_unmapped"] = unmapped
    return build_ecg(signal, h.fs, [names[i] for i in keep], src, metadata, labels=labels)
