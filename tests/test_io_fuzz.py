"""Property-based fuzzing of every reader: a mutated file reads as a valid ECG or raises ECGError, nothing else.

Each format starts from a valid file written here from a bundled PTB-XL record (the
Philips one is a shared sample). Hypothesis then edits one header field to a hostile
value (gains, rates, counts, names, units: zero, negative, 1e-40, 1e308, NaN, 1e12,
300-character names, paths) and flips, cuts or inserts bytes anywhere. ``read_ecg``
must return an ECG that passes ``validate_ecg`` or raise ``ECGError``, within a 5-s
deadline per example. The quick test runs 12 examples per format; the one marked slow
(left out by ``-m "not slow"``) 400 (Philips, whose decoding is slower: 100), about
15 s for the whole file. Both are derandomized, so every run tries the same files.
"""
from __future__ import annotations

import io
import re
import shutil
import struct
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import edfio
import numpy as np
import pytest
import scipy.io
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecglens.errors import ECGError
from ecglens.io import read_ecg
from ecglens.io._common import validate_ecg
from ecglens.io.ishne import HEADER, PREAMBLE, header_crc
from ecglens.samples import load_sample

from test_io_formats import PHILIPS_DIR, aecg_xml, ishne_bytes, muse_xml, write_dicom  # tests/ is on sys.path

NUMBERS = ["0", "-1", "1", "1e-40", "1e308", "-1e308", "nan", "inf", "1e12", "99999999", "4294967296", "0.0001", "",
           "x", "12345678901234567890"]
NAMES = ["ECG_1", "Resp", "II", "V7", "vx", "EDF Annotations", "NU", "mmHg", "../x", "x" * 300, "\x00"]
INTEGERS = [0, -1, 1, 2, 13, 255, 32767, -32768, 2**31 - 1, -(2**31)]


@dataclass
class Seed:
    """A valid record: its files (name -> bytes), the one to read, and where its header fields lie."""

    files: dict[str, bytes]
    target: str
    fields: list[tuple[str, int, int, str]]  # (file, start, end, kind: "text", "fixed", "dicom" or a struct format)
    kwargs: dict


def _text_fields(name: str, data: bytes, pattern: str, limit: int | None = None) -> list[tuple[str, int, int, str]]:
    """Spans of the first group of ``pattern`` in ``data`` (up to byte ``limit``), as text fields of file ``name``."""
    text = data[:limit].decode("latin-1")
    return [(name, m.start(1), m.end(1), "text") for m in re.finditer(pattern, text)]


def _edf_fields(name: str, data: bytes) -> list[tuple[str, int, int, str]]:
    """The fixed-width EDF header fields: record count, duration, signal count, and each signal's label to samples."""
    n = int(data[252:256])
    spans = [(184, 192), (236, 244), (244, 252), (252, 256)]
    widths = [("label", 16), ("transducer", 80), ("dimension", 8), ("pmin", 8), ("pmax", 8), ("dmin", 8), ("dmax", 8),
              ("prefilter", 80), ("samples", 8)]
    offset = 256
    for field, width in widths:
        if field not in {"transducer", "prefilter"}:
            spans += [(offset + i * width, offset + (i + 1) * width) for i in range(min(n, 3))]
        offset += width * n
    return [(name, a, b, "fixed") for a, b in spans]


def _ishne_fields(name: str) -> list[tuple[str, int, int, str]]:
    """ISHNE header integers (sample count, offsets, lead count, codes, resolution, rate): the CRC is redone after an edit."""
    layout = HEADER.format
    wanted = {0: "<i", 1: "<i", 3: "<i", 22: "<h", 23: "<h", 47: "<h", 61: "<h"}  # field index -> format
    tokens = re.findall(r"(\d*)([a-z])", layout.replace(" ", "").lstrip("<"))
    out, offset, index = [], PREAMBLE, 0
    for count, code in tokens:
        count = int(count or 1)
        size = struct.calcsize(f"<{code}")
        if code == "s":
            index, offset = index + 1, offset + count
            continue
        for _ in range(count):
            if index in wanted:
                out.append((name, offset, offset + size, wanted[index]))
            index, offset = index + 1, offset + size
    assert offset == PREAMBLE + HEADER.size
    return out


_DICOM_TAGS = {  # (group, element) -> VR, for the waveform attributes ecglens reads
    (0x003A, 0x001A): "DS", (0x003A, 0x0010): "UL", (0x003A, 0x0005): "US", (0x003A, 0x0210): "DS",
    (0x003A, 0x0212): "DS", (0x003A, 0x0213): "DS", (0x5400, 0x1004): "US", (0x5400, 0x1006): "CS",
    (0x0008, 0x0104): "LO", (0x0008, 0x0100): "SH", (0x003A, 0x0020): "SH",
}


def _dicom_fields(name: str, data: bytes) -> list[tuple[str, int, int, str]]:
    """Value spans of the waveform attributes in an explicit-VR little-endian file (text VRs: "dicom", US/UL: "<H"/"<I")."""
    out = []
    for (group, element), vr in _DICOM_TAGS.items():
        tag = struct.pack("<HH", group, element) + vr.encode()
        for m in re.finditer(re.escape(tag), data):
            length = struct.unpack("<H", data[m.end():m.end() + 2])[0]
            start = m.end() + 2
            out.append((name, start, start + length, {"US": "<H", "UL": "<I"}.get(vr, "dicom")))
    return out


def _replace(data: bytes, start: int, end: int, kind: str, value, new_text: str) -> bytes:
    """``data`` with the field [start, end) set to a hostile value of its kind."""
    if kind == "text":
        return data[:start] + new_text.encode("latin-1", "replace") + data[end:]
    if kind == "fixed":  # EDF: keep the width
        return data[:start] + new_text.encode("latin-1", "replace")[:end - start].ljust(end - start) + data[end:]
    if kind == "dicom":  # rewrite the 2-byte length before the value
        raw = new_text.encode("latin-1", "replace")
        raw += b" " * (len(raw) % 2)
        return data[:start - 2] + struct.pack("<H", len(raw)) + raw + data[end:]
    bits = 8 * struct.calcsize(kind)
    wrapped = value % (1 << bits) if kind[1].isupper() else (value + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
    return data[:start] + struct.pack(kind, wrapped) + data[end:]


def _ishne_recrc(data: bytes) -> bytes:
    """An ISHNE file with its header CRC recomputed, so a field edit reaches the checks behind it."""
    var_size = struct.unpack("<i", data[PREAMBLE:PREAMBLE + 4])[0]
    block = data[PREAMBLE:PREAMBLE + HEADER.size + max(0, min(var_size, len(data)))]
    return data[:len(b"ISHNE1.0")] + struct.pack("<H", header_crc(block)) + data[PREAMBLE:]


def _build_seeds(directory: Path) -> dict[str, Seed]:
    """One valid file set per format, from 1 s of PTB-XL record 172 (500 Hz)."""
    ref = load_sample(172, 500)
    ref = ref.with_signal(ref.signal[:, :500])
    seeds: dict[str, Seed] = {}

    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(ref.leads), p_signal=ref.signal.T.astype(np.float64),
                fmt=["16"] * 12, write_dir=str(directory))
    hea = (directory / "rec.hea").read_bytes()
    seeds["wfdb"] = Seed({"rec.hea": hea, "rec.dat": (directory / "rec.dat").read_bytes()}, "rec.hea",
                         _text_fields("rec.hea", hea, r"([^\s()/]+)"), {})

    val = np.round(ref.signal.astype(np.float64) * 1000).astype(np.int16)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"val": val}, format="4")
    checksums = [(int(v.astype(np.int64).sum()) + 32768) % 65536 - 32768 for v in val]  # WFDB: 16-bit signed sums
    lines = ["A1 12 500 500"] + [f"A1.mat 16+24 1000/mV 16 0 {v[0]} {c} 0 {n}" for v, c, n in zip(val, checksums, ref.leads)]
    lines += ["#Age: 50", "#Dx: 164889003"]
    chal = ("\n".join(lines) + "\n").encode()
    seeds["challenge"] = Seed({"A1.hea": chal, "A1.mat": buffer.getvalue()}, "A1.hea",
                              _text_fields("A1.hea", chal, r"([^\s()/]+)"), {})

    buffer = io.BytesIO()
    edfio.Edf([edfio.EdfSignal(ref.signal[i].astype(np.float64) * 1000, 500, label=f"ECG {n}", physical_dimension="uV")
               for i, n in enumerate(ref.leads)]).write(buffer)
    seeds["edf"] = Seed({"rec.edf": buffer.getvalue()}, "rec.edf", _edf_fields("rec.edf", buffer.getvalue()), {})

    csv = (",".join(["time", *ref.leads]) + "\n" + "\n".join(
        f"{i / 500:.3f}," + ",".join(f"{v:.4f}" for v in row) for i, row in enumerate(ref.signal.T[:200])) + "\n").encode()
    seeds["csv"] = Seed({"rec.csv": csv}, "rec.csv", _text_fields("rec.csv", csv, r"([^,\n]+)", limit=400),
                        {"sampling_rate": 500})

    buffer = io.BytesIO()
    np.save(buffer, ref.signal)
    seeds["npy"] = Seed({"rec.npy": buffer.getvalue()}, "rec.npy",
                        _text_fields("rec.npy", buffer.getvalue(), r"([\w<.]+)", limit=128), {"sampling_rate": 500})

    xml_fields = r"(?:>([^<]{1,40})<)|(?:=\"([^\"]{0,40})\")"
    for fmt, text in (("muse", muse_xml(ref)), ("aecg", aecg_xml(ref))):
        data = text.encode("latin-1")
        fields = [("rec.xml", m.start(g), m.end(g), "text") for m in re.finditer(xml_fields, text)
                  for g in (1, 2) if m.group(g) is not None]
        seeds[fmt] = Seed({"rec.xml": data}, "rec.xml", fields, {})

    philips = PHILIPS_DIR / "repbeats_example.xml"
    if philips.is_file():
        text = philips.read_bytes().decode("latin-1")
        fields = [("rec.xml", m.start(g), m.end(g), "text") for m in re.finditer(xml_fields, text)
                  for g in (1, 2) if m.group(g) is not None]
        seeds["philips"] = Seed({"rec.xml": philips.read_bytes()}, "rec.xml", fields, {})

    dcm = write_dicom(directory / "rec.dcm", ref).read_bytes()
    seeds["dicom"] = Seed({"rec.dcm": dcm}, "rec.dcm", _dicom_fields("rec.dcm", dcm), {})

    seeds["ishne"] = Seed({"rec.ecg": ishne_bytes(ref)}, "rec.ecg", _ishne_fields("rec.ecg"), {})
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Seed]:
    return _build_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


FORMATS = ["wfdb", "challenge", "edf", "csv", "npy", "muse", "philips", "dicom", "aecg", "ishne"]


@st.composite
def mutations(draw) -> list[tuple]:
    """Up to one header-field edit, then up to three byte-level mutations (flip, cut, insert) in any file."""
    ops: list[tuple] = []
    if draw(st.booleans()):
        ops.append(("field", draw(st.integers(0, 10**6)), draw(st.sampled_from(INTEGERS)),
                    draw(st.sampled_from(NUMBERS + NAMES))))
    for _ in range(draw(st.integers(0 if ops else 1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        ops.append((kind, draw(st.integers(0, 10**6)), draw(st.integers(0, 10**9)),
                    draw(st.integers(0, 255)) if kind == "flip" else draw(st.binary(min_size=1, max_size=16))))
    return ops


def _mutate(seed: Seed, ops: list[tuple], fmt: str) -> dict[str, bytes]:
    """The seed's files with ``ops`` applied (positions taken modulo each file's length)."""
    files = dict(seed.files)
    names = sorted(files)
    for op in ops:
        if op[0] == "field":
            if not seed.fields:
                continue
            name, start, end, kind = seed.fields[op[1] % len(seed.fields)]
            files[name] = _replace(files[name], start, end, kind, op[2], op[3])
            if fmt == "ishne":
                files[name] = _ishne_recrc(files[name])
            continue
        name = names[op[1] % len(names)]
        data = files[name]
        pos = op[2] % (len(data) + 1)
        if op[0] == "flip" and data:
            pos = min(pos, len(data) - 1)
            files[name] = data[:pos] + bytes([data[pos] ^ (op[3] or 1)]) + data[pos + 1:]
        elif op[0] == "cut":
            files[name] = data[:pos]
        elif op[0] == "insert":
            files[name] = data[:pos] + op[3] + data[pos:]
    return files


def _read_mutated(seed: Seed, ops: list[tuple], fmt: str, directory: Path) -> str:
    """Write the mutated files, read them: "ok" for a valid ECG, "refused" for an ECGError; anything else fails."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    for name, data in _mutate(seed, ops, fmt).items():
        (directory / name).write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wfdb, edfio and pydicom warn about the damage they see
        try:
            ecg = read_ecg(directory / seed.target, **seed.kwargs)
        except ECGError as exc:
            assert str(directory) in str(exc), str(exc)  # the message names the file
            return "refused"
    assert validate_ecg(ecg) is ecg
    assert ecg.signal.dtype == np.float32 and np.isfinite(ecg.signal).all() and 1 <= ecg.sampling_rate <= 100_000
    assert ecg.leads and all(isinstance(n, str) and n.strip() for n in ecg.leads)
    return "ok"


def _fuzz(seeds: dict[str, Seed], fmt: str, directory: Path, examples: int) -> Counter:
    """Run ``examples`` mutated files of one format through ``read_ecg``; returns how many read ("ok") and were refused."""
    if fmt not in seeds:
        pytest.skip(f"no {fmt} seed: the sample file is not beside the project")
    seed = seeds[fmt]
    assert _read_mutated(seed, [], fmt, directory) == "ok"  # the seed itself is valid
    outcomes: Counter = Counter()

    @settings(max_examples=examples, deadline=timedelta(seconds=5), derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutations())
    def run(ops):
        outcomes[_read_mutated(seed, ops, fmt, directory)] += 1

    run()
    return outcomes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_read_or_raise_ecgerror(seeds, workdir, fmt):
    assert sum(_fuzz(seeds, fmt, workdir, examples=12).values()) >= 12


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_read_or_raise_ecgerror_many(seeds, workdir, fmt):
    outcomes = _fuzz(seeds, fmt, workdir, examples=100 if fmt == "philips" else 400)
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes  # mutations reach past the first check


def _field_index(seed: Seed, where: Callable[[tuple], bool]) -> int:
    return next(i for i, field in enumerate(seed.fields) if where(field))


def test_field_edits_reach_the_readers_checks(seeds, workdir):
    """Hostile header values are refused for what they are, not merely as unreadable files."""
    wfdb_gain = _field_index(seeds["wfdb"], lambda f: seeds["wfdb"].files["rec.hea"][f[2]:f[2] + 1] == b"(")  # lead I
    edf_records = _field_index(seeds["edf"], lambda f: f[1] == 236)
    ishne_rate = len(seeds["ishne"].fields) - 1  # the last field: the sampling rate
    cases = [("wfdb", ("field", wfdb_gain, 0, "1e-40"), "beyond float32's range"),
             ("edf", ("field", edf_records, 0, "99999999"), "header promises 99999999 data records"),
             ("ishne", ("field", ishne_rate, 0, ""), "header states 0 Hz")]
    for fmt, op, problem in cases:
        directory = workdir / "edits"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        for name, data in _mutate(seeds[fmt], [op], fmt).items():
            (directory / name).write_bytes(data)
        with pytest.raises(ECGError, match=re.escape(problem)):
            read_ecg(directory / seeds[fmt].target, **seeds[fmt].kwargs)
