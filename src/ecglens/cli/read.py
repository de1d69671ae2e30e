"""``ecglens read``: what is in each ECG file (leads, rate, duration, units, metadata, labels), any lead set."""
from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.codes import PTBXL_SEX, parse_scp_codes
from ..errors import ECGError
from . import COMMANDS

COMMENT_CHARS = 120  # comments are trimmed to this many characters in the text summary
RATELESS_SUFFIXES = (".csv", ".npy")
PTBXL_DATABASE = "ptbxl_database.csv"


def register(subparsers) -> None:
    p = subparsers.add_parser("read", help=COMMANDS["read"],
                              description="Summarise ECG records. Directories are searched for records. "
                                          "Files that cannot be read are reported and counted (exit status 2).")
    p.add_argument("files", nargs="+", metavar="FILE", help="ECG file(s) or directories (.hea/.dat/.mat/.edf/.csv/.npy)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="sampling rate in Hz; required for .csv/.npy, must match the file for other formats")
    p.add_argument("--units", choices=("uV", "mV", "V"), default=None,
                   help="unit of .csv/.npy values, which those files cannot state (default mV); other formats state their own")
    add_leads_argument(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of record summaries")
    p.set_defaults(func=run)


def add_leads_argument(parser) -> None:
    """``--leads NAME,NAME``: keep only these leads of each record (``read``, ``plot`` and ``beat`` share it)."""
    parser.add_argument("--leads", type=parse_leads, default=None, metavar="NAME,NAME",
                        help="keep only these leads, in this order (names as the record gives them, or standard "
                             "spellings such as II for MLII); default: every ECG lead in the file")


def parse_leads(text: str) -> list[str]:
    """``"II, V5"`` -> ``["II", "V5"]``; an empty list is an error."""
    import argparse

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected lead names separated by commas, got {text!r}")
    return names


def read_record(path: str | Path, rate: float | None, units: str | None = None, leads: list[str] | None = None):
    """One record as the read/plot/beat commands take it: read, PTB-XL facts attached, ``leads`` picked."""
    from ..io import read_ecg

    suffix = Path(path).suffix.lower()
    if rate is None and suffix in RATELESS_SUFFIXES:
        raise ECGError(path, f"{suffix} files carry no sampling rate; pass --rate HZ")
    ecg = attach_ptbxl_facts(read_ecg(path, sampling_rate=rate, units=units if suffix in RATELESS_SUFFIXES else None), path)
    return ecg if leads is None else ecg.select(leads)


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, paths, tuples and sets turned into JSON types (NaN/inf -> null)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


@lru_cache(maxsize=4)
def _ptbxl_rows(table: Path) -> dict[str, dict[str, str]]:
    """PTB-XL table rows keyed by record path without suffix (``records100/00000/00001_lr``)."""
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"ecg_id", "scp_codes", "filename_lr", "filename_hr"} - set(reader.fieldnames or ())
            if missing:
                raise ECGError(table, f"missing column(s) {sorted(missing)}")
            rows = list(reader)
    except OSError as exc:
        raise ECGError(table, f"cannot read ({exc})") from exc
    return {row[col]: row for row in rows for col in ("filename_lr", "filename_hr") if row.get(col)}


def _ptbxl_table_for(path: Path) -> tuple[Path, str] | None:
    """The PTB-XL table that lists this record (a PTB-XL copy or the bundled samples) and its key in it."""
    from ..samples import samples_dir

    base = Path(path).resolve()
    base = base.with_suffix("") if base.suffix.lower() in {".hea", ".dat"} else base
    for root in list(base.parents)[:3]:
        table = root / PTBXL_DATABASE
        if not table.is_file() and root == samples_dir().resolve():
            table = root / "index.csv"
        if table.is_file():
            return table, base.relative_to(root).as_posix()
    return None


def attach_ptbxl_facts(ecg, path: str | Path):
    """The record with its PTB-XL statements as ``labels`` (plus age, sex, ecg_id) when a PTB-XL table lists it.

    WFDB files carry no diagnoses; PTB-XL keeps them in ``ptbxl_database.csv`` two
    folders above each record (the bundled samples in their ``index.csv``).
    Records outside such a tree come back unchanged.
    """
    found = _ptbxl_table_for(Path(path))
    if found is None:
        return ecg
    table, key = found
    row = _ptbxl_rows(table).get(key)
    if row is None:
        return ecg
    codes = parse_scp_codes(row["scp_codes"], table, row["ecg_id"])
    meta = {**ecg.metadata, "dataset": "PTB-XL", "ecg_id": int(row["ecg_id"]), "scp_codes": codes}
    age = row.get("age", "")
    try:
        age_value = float(age)
        meta["age"] = int(age_value) if age_value.is_integer() else age_value
    except ValueError:
        pass
    sex = str(row.get("sex", "")).split(".")[0]
    if sex in ("0", "1"):
        meta["sex"] = PTBXL_SEX[int(sex)]
    return replace(ecg, labels=tuple(sorted(codes)), metadata=meta)


def _message(name: str | Path, exc: Exception) -> str:
    """``<file>: <problem>``, naming the file the user gave even when the error names another."""
    text = str(exc) if isinstance(exc, ECGError) else f"{type(exc).__name__}: {exc}"
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


def format_summary(ecg) -> str:
    """A few aligned lines describing one record, for people."""
    meta = ecg.metadata
    derived = meta.get("derived_leads") or []
    lines = [
        str(ecg.source),
        f"  leads     {len(ecg.leads)}: {' '.join(ecg.leads)}",
        f"  signal    {ecg.sampling_rate:g} Hz, {ecg.n_samples} samples, {ecg.duration:.3g} s, units {ecg.units}",
    ]
    source = [f"format {meta['format']}"] if meta.get("format") else []
    if meta.get("original_leads"):
        source.append(f"original leads {' '.join(map(str, meta['original_leads']))}")
    source.append(f"derived {' '.join(derived)}" if derived else "no derived leads")
    lines.append("  source    " + "; ".join(source))
    if meta.get("extra_leads"):
        lines.append(f"  extra     {' '.join(meta['extra_leads'])} (not among the 12 standard leads)")
    if meta.get("ignored_channels"):
        lines.append("  set aside " + "; ".join(f"{c['name']} ({c['reason']})" for c in meta["ignored_channels"]))
    if meta.get("reader_flags"):
        lines.append("  flags     " + ", ".join(meta["reader_flags"])
                     + "".join(f"; {name}: header {c['header']}, data {c['data']}"
                               for name, c in (meta.get("checksum_mismatch") or {}).items()))
    patient = [f"{k} {meta[k]}" for k in ("age", "sex") if meta.get(k) not in (None, "")]
    if patient:
        lines.append("  patient   " + ", ".join(patient))
    comments = meta.get("comments")
    if comments:
        text = " | ".join(str(c).strip() for c in comments) if isinstance(comments, (list, tuple)) else str(comments)
        if len(text) > COMMENT_CHARS:
            text = text[:COMMENT_CHARS - 3] + "..."
        lines.append("  comments  " + text)
    if ecg.labels is not None:
        lines.append("  labels    " + (", ".join(ecg.labels) if ecg.labels else "(none that map to PTB-XL statements)"))
    return "\n".join(lines)


def _report(name: str | Path, exc: Exception) -> None:
    print(f"ecglens: error: {_message(name, exc)}", file=sys.stderr)


def run(args) -> int:
    from ..io import find_records

    total = failed = 0
    summaries = []
    for name in args.files:
        try:
            # a bare WFDB record name (``.../00001_lr``) is a record even though no file has that name
            found = [Path(name)] if Path(f"{name}.hea").is_file() and not Path(name).exists() else find_records(name)
            if not found:
                raise ECGError(name, "no ECG records found in this directory")
        except ECGError as exc:
            total, failed = total + 1, failed + 1
            _report(name, exc)
            continue
        for path in found:
            total += 1
            try:
                ecg = read_record(path, args.rate, args.units, args.leads)
            except Exception as exc:  # every failure is reported and counted, whatever raised it
                failed += 1
                _report(path, exc)
                continue
            if args.json:
                summaries.append(to_jsonable(ecg.summary()))
            else:
                print(format_summary(ecg) + "\n")
    if args.json:
        print(json.dumps(summaries, indent=2, allow_nan=False))
    if failed:
        print(f"ecglens: error: {failed} of {total} file{'' if total == 1 else 's'} could not be read", file=sys.stderr)
        return 2
    return 0
