"""``read_ecg``: one entry point for every supported format, chosen by file suffix."""
from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path

from ..errors import ECGError
from ._common import HEADER_SIZE_LIMIT, validate_ecg
from .record import ECG

SUPPORTED_SUFFIXES = (".hea", ".dat", ".mat", ".edf", ".csv", ".npy", ".xml", ".dcm", ".ecg", ".ishne")
HOSPITAL_SUFFIXES = (".dcm", ".ecg", ".ishne")  # listed by find_records as they are; .xml by its root element
# root element of an XML export -> "module:reader" (GE MUSE, Philips Sierra, HL7 aECG)
XML_READERS = {"RestingECG": "muse:read_muse", "restingecgdata": "philips:read_philips", "AnnotatedECG": "aecg:read_aecg"}
UNITLESS_SUFFIXES = (".csv", ".npy")  # formats that carry no units: values are mV unless ``units`` says otherwise


def _kind(path: Path) -> str | None:
    """``"file"``, ``"dir"`` or ``"special"`` (FIFO, device, socket) for what is at ``path``; None when nothing is.

    A path the system cannot look up (a name over 255 bytes, a NUL byte, a loop of
    links) is an ECGError, never an OSError.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        raise ECGError(path, f"unusable path ({getattr(exc, 'strerror', None) or exc})") from exc
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "special"


def _header_of(path: Path) -> Path | None:
    """The ``.hea`` beside a WFDB/challenge path (``x.hea``, ``x.dat``, ``x.mat`` or bare ``x``), if any.

    A header that is there but is not a regular file (a FIFO, a directory) is an ECGError.
    """
    candidates = [Path(str(path) + ".hea")]
    if path.suffix.lower() in {".hea", ".dat", ".mat"}:
        candidates.insert(0, path.with_suffix(".hea"))
    for candidate in candidates:
        kind = _kind(candidate)
        if kind == "file":
            return candidate
        if kind is not None:
            raise ECGError(candidate, "header is not a regular file")
    return None


def header_is_challenge(header: Path) -> bool:
    """True when the header's signal file is a ``.mat`` (PhysioNet/CinC 2020-2021 challenge layout)."""
    from ._hospital import read_limited

    text = read_limited(header, HEADER_SIZE_LIMIT).decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) < 2:
        return lines[0].split()[0].lower().endswith(".mat") if lines else False
    return lines[1].split()[0].lower().endswith(".mat")


def read_ecg(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None,
             units: str | None = None) -> ECG:
    """Read any supported ECG file into a validated float32 (leads, samples) ECG in mV.

    The record carries the ECG leads the file has: standard leads first, in standard
    order, then other leads under their names (``metadata["extra_leads"]``); channels
    that are not ECG (pressure, respiration, a unit such as 'NU', annotations) are set
    aside in ``metadata["ignored_channels"]`` with the reason. ``ECG.standard12()``
    gives the 12 standard leads (deriving limb leads) for models. What any reader
    returns passes ``validate_ecg`` (finite samples, plausible rate, named leads).

    Formats by suffix: ``.hea``/``.dat``/bare record name (WFDB; challenge when the
    header's signal file is ``.mat``), ``.mat`` (challenge), ``.edf`` (EDF/EDF+),
    ``.csv`` and ``.npy`` (these carry no rate, so ``sampling_rate`` is required),
    ``.xml`` (GE MUSE, Philips Sierra or HL7 aECG, by root element), ``.dcm`` (DICOM
    waveform) and ``.ecg``/``.ishne`` (ISHNE Holter).
    For the self-describing formats ``sampling_rate``, when given, must match the
    file. ``leads`` names the file's channels in order, overriding names in the file
    (needed for NPY arrays that are not in standard order). ``units`` (``"uV"``, ``"mV"``, ``"V"``)
    gives the unit of ``.csv``/``.npy`` values, which those files cannot state (default mV); the
    other formats state their own, so ``units`` with them is an error.
    """
    p = Path(path)
    return validate_ecg(_read(p, sampling_rate, leads, units), p)


def _read(p: Path, sampling_rate: float | None, leads: list[str] | None, units: str | None) -> ECG:
    """The reader for ``p``, chosen by suffix (see ``read_ecg``)."""
    suffix = p.suffix.lower()
    if units is not None and suffix not in UNITLESS_SUFFIXES:
        raise ECGError(p, f"units={units!r} applies to {'/'.join(UNITLESS_SUFFIXES)} files only; "
                          f"{suffix or 'WFDB'} files state their own units")
    kind = _kind(p)
    header = _header_of(p) if suffix in {"", ".hea", ".dat", ".mat"} or kind is None else None
    if header is not None:
        if suffix == ".mat" or header_is_challenge(header):
            from .challenge import read_challenge
            return read_challenge(p, sampling_rate=sampling_rate, leads=leads)
        from .wfdb_format import read_wfdb
        return read_wfdb(p, sampling_rate=sampling_rate, leads=leads)
    if suffix in {".dat", ".mat"} and kind is not None:
        raise ECGError(p, f"missing header file {p.with_suffix('.hea').name}")
    if kind is None:
        raise ECGError(p, "no such file or record")
    if kind == "dir":
        raise ECGError(p, "is a directory; use find_records to list the records in it")
    if kind == "special":
        raise ECGError(p, "not a regular file (a FIFO, device or socket); ECG records are regular files")
    if suffix == ".edf":
        from .edf import read_edf
        return read_edf(p, sampling_rate=sampling_rate, leads=leads)
    if suffix == ".csv":
        from .tabular import read_csv
        return read_csv(p, sampling_rate=sampling_rate, leads=leads, units=units)
    if suffix == ".npy":
        from .tabular import read_npy
        return read_npy(p, sampling_rate=sampling_rate, leads=leads, units=units)
    if suffix == ".xml":
        module, reader = _xml_reader(p).split(":")
        return getattr(importlib.import_module(f".{module}", __package__), reader)(p, sampling_rate=sampling_rate, leads=leads)
    if suffix == ".dcm":
        from .dicom import read_dicom
        return read_dicom(p, sampling_rate=sampling_rate, leads=leads)
    if suffix in {".ecg", ".ishne"}:
        from .ishne import read_ishne
        return read_ishne(p, sampling_rate=sampling_rate, leads=leads)
    raise ECGError(p, f"unsupported file type {suffix or '(no suffix)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")


def _xml_reader(path: Path) -> str:
    """The ``"module:reader"`` for an XML export, chosen by its root element."""
    from ._hospital import xml_root_name

    root = xml_root_name(path)
    if root not in XML_READERS:
        raise ECGError(path, f"unrecognised XML ECG: root element <{root}>; expected one of "
                             f"{', '.join(f'<{r}>' for r in XML_READERS)}")
    return XML_READERS[root]


def _xml_looks_like_ecg(path: Path) -> bool:
    """False only for an XML file whose root element names no ECG export (a broken one is listed, to be reported)."""
    from ._hospital import xml_root_name

    try:
        return xml_root_name(path) in XML_READERS
    except ECGError:
        return True


def find_records(path: str | os.PathLike) -> list[Path]:
    """Every readable record under ``path``, one entry per record, sorted.

    A file (or bare WFDB record name) is returned as is. A directory is searched recursively: a WFDB or
    challenge record is listed once, by its ``.hea`` (its ``.dat``/``.mat`` are not
    listed again, and a signal file without a header is not readable); ``.edf``, ``.dcm``,
    ``.ecg``/``.ishne`` files and XML exports (MUSE, Philips, aECG root elements) are
    listed; ``.csv`` and ``.npy`` files are listed when they look like ECGs
    (lead-name or numeric header row; a 2-D array with a 12-long axis), so metadata
    tables such as ``index.csv`` are left out.
    """
    from .tabular import csv_looks_like_ecg, npy_looks_like_ecg

    p = Path(path)
    kind = _kind(p)
    if kind in {"file", "special"} or (kind is None and _kind(Path(f"{p}.hea")) == "file"):
        return [p]  # a file (read_ecg refuses a special one), or a bare WFDB record name
    if kind is None:
        raise ECGError(p, "no such file or directory")
    found: list[Path] = []
    for f in p.rglob("*"):
        if not f.is_file():
            continue
        suffix = f.suffix.lower()
        if (suffix in {".hea", ".edf", *HOSPITAL_SUFFIXES}
                or (suffix == ".xml" and _xml_looks_like_ecg(f))
                or (suffix == ".csv" and csv_looks_like_ecg(f))
                or (suffix == ".npy" and npy_looks_like_ecg(f))):
            found.append(f)
    return sorted(found)
