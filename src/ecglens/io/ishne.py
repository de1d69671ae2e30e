"""ISHNE Holter files (the ISHNE standard output format, version 1.0).

Layout: the magic ``ISHNE1.0``, a CRC-CCITT of the header, a 512-byte fixed header
(little-endian: sizes and offsets, patient and recording facts, lead count, one
lead code and one amplitude resolution in nV per lead, sampling rate), a variable
block of free text, then int16 samples interleaved by lead.
"""
from __future__ import annotations

import binascii
import os
import struct

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate
from ._hospital import patient_facts, pick_leads, regular_file_size
from .record import ECG

MAGIC = b"ISHNE1.0"
ANNOTATION_MAGIC = b"ANN  1.0"
PREAMBLE = len(MAGIC) + 2  # magic + CRC
# var-block size, samples per lead, var-block offset, ECG offset, version, first name, last name, ID, sex, race,
# birth date, record date, file date, start time, lead count, lead codes, lead quality, resolution (nV), pacemaker,
# recorder, sampling rate, proprietary, copyright, reserved
HEADER = struct.Struct("<4i h 40s 40s 20s h h 3h 3h 3h 3h h 12h 12h 12h h 40s h 80s 80s 88s")
LEAD_CODES = {0: "unknown", 1: "generic", 2: "X", 3: "Y", 4: "Z", 5: "I", 6: "II", 7: "III", 8: "aVR", 9: "aVL",
              10: "aVF", 11: "V1", 12: "V2", 13: "V3", 14: "V4", 15: "V5", 16: "V6", 17: "ES", 18: "AS", 19: "AI"}


def header_crc(block: bytes) -> int:
    """The ISHNE header checksum: CRC-CCITT (polynomial 0x1021, initial value 0xFFFF)."""
    return binascii.crc_hqx(block, 0xFFFF)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def read_ishne(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read an ISHNE Holter ``.ecg`` file (1 to 12 leads) into an ECG in mV.

    The header checksum is verified; leads the header codes as other than the 12
    standard ones (X/Y/Z, generic, ...) are kept under those names (``metadata["extra_leads"]``).
    """
    src = str(path)
    size = regular_file_size(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(PREAMBLE + HEADER.size)
            if head[:len(MAGIC)] == ANNOTATION_MAGIC:
                raise ECGError(src, "an ISHNE annotation file, not an ECG")
            if head[:len(MAGIC)] != MAGIC:
                raise ECGError(src, f"not an ISHNE file (magic {head[:len(MAGIC)]!r}, expected {MAGIC!r})")
            if len(head) < PREAMBLE + HEADER.size:
                raise ECGError(src, f"truncated header: {len(head)} of {PREAMBLE + HEADER.size} bytes")
            fields = HEADER.unpack(head[PREAMBLE:])
            var_size, n_samples, _, ecg_offset, version = fields[:5]
            if var_size < 0 or ecg_offset < PREAMBLE + HEADER.size or var_size > size:
                raise ECGError(src, f"implausible header offsets (variable block {var_size} bytes, ECG at byte {ecg_offset})")
            variable = fh.read(var_size)
    except OSError as exc:
        raise ECGError(src, f"cannot read ({exc.strerror or exc})") from exc
    stated_crc = struct.unpack("<H", head[len(MAGIC):PREAMBLE])[0]
    if header_crc(head[PREAMBLE:] + variable) != stated_crc:
        raise ECGError(src, f"header checksum mismatch (stored {stated_crc:#06x}): the header is damaged")
    sex, n_leads = fields[8], fields[22]
    codes, quality, resolution = fields[23:35], fields[35:47], fields[47:59]
    rate = fields[61]
    if not 1 <= n_leads <= 12:
        raise ECGError(src, f"header states {n_leads} leads; ISHNE holds 1 to 12")
    if rate <= 0 or n_samples <= 0:
        raise ECGError(src, f"header states {rate} Hz and {n_samples} samples per lead")
    check_rate(rate, sampling_rate, src)
    resolution_nv = np.asarray(resolution[:n_leads], dtype=np.float64)
    if np.any(resolution_nv <= 0):
        raise ECGError(src, f"non-positive amplitude resolution(s) {resolution[:n_leads]} nV")
    need = ecg_offset + 2 * n_leads * n_samples
    if size < need:
        raise ECGError(src, f"truncated: {n_leads} leads x {n_samples} samples need {need} bytes, the file holds {size}")
    found = [LEAD_CODES.get(c, f"code {c}") for c in codes[:n_leads]]
    keep, names, ignored = pick_leads(found, leads, src)
    samples = np.fromfile(path, dtype="<i2", count=n_leads * n_samples, offset=ecg_offset).reshape(n_samples, n_leads).T
    signal = samples[keep].astype(np.float64) * (resolution_nv[keep, None] * 1e-6)
    metadata = {
        "format": "ishne",
        "file_version": version,
        "original_leads": found,
        "original_units": [f"{r:g} nV per unit" for r in resolution_nv],
        "ignored_channels": ignored,
        "lead_quality": list(quality[:n_leads]),
        "recorder": _text(fields[60]),
        "record_date": "{2:04d}-{1:02d}-{0:02d}".format(*fields[13:16]),
        "start_time": "{:02d}:{:02d}:{:02d}".format(*fields[19:22]),
        "comments": _text(variable),
        **patient_facts(None, {1: "Male", 2: "Female"}.get(sex)),
    }
    return build_ecg(signal, rate, names, src, metadata)
