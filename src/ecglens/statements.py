"""Plain-language descriptions of PTB-XL statement codes, to show beside the bare codes in every output.

    >>> from ecglens.statements import describe
    >>> describe("AFIB")
    'atrial fibrillation'
    >>> describe("LAO/LAE")
    'left atrial overload/enlargement'

The table ``data/scp_descriptions.csv`` is derived from PTB-XL's ``scp_statements.csv`` (Wagner et al.
2020, CC BY 4.0; attribution in ``data/ATTRIBUTION.md``) by :func:`write_descriptions`; regenerate it with
``python bench/make_statement_names.py PTBXL_DIR``. Besides the 71 statements it names the diagnostic
classes and subclasses that label sets other than ``all`` use (``GROUPS``).
"""
from __future__ import annotations

import csv
import io
import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from .errors import ECGError

TABLE = "data/scp_descriptions.csv"
COLUMNS = ("code", "description", "kind", "diagnostic_class", "diagnostic_subclass", "category")
# Diagnostic classes and subclasses that scp_statements.csv uses but does not describe, named as in
# Wagner et al. 2020 (Scientific Data 7:154), Table 2.
GROUPS = {
    "MI": ("myocardial infarction", "class"),
    "STTC": ("ST/T change", "class"),
    "CD": ("conduction disturbance", "class"),
    "HYP": ("hypertrophy", "class"),
    "ISCA": ("ischemic in anterior leads", "subclass"),
    "ISCI": ("ischemic in inferior leads", "subclass"),
    "LAFB/LPFB": ("left anterior/left posterior fascicular block", "subclass"),
    "_AVB": ("AV block", "subclass"),
}
# Besides PTB-XL's rhythm statements, these are defined by the sequence of beats (ectopic beats, the
# P-to-QRS relation), which one averaged beat cannot show.
SEQUENCE_STATEMENTS = ("PAC", "PVC", "2AVB", "3AVB")
GROUP_COLUMNS = ("diagnostic_class", "diagnostic_subclass")  # the table's groupings of statements


@lru_cache(maxsize=1)
def _rows() -> tuple[dict[str, str], ...]:
    """The shipped table's rows, read once."""
    text = files("ecglens").joinpath(TABLE).read_text(encoding="utf-8")
    return tuple(csv.DictReader(io.StringIO(text)))


@lru_cache(maxsize=1)
def descriptions() -> dict[str, str]:
    """{code: description} for every statement, class and subclass in the shipped table."""
    return {row["code"]: row["description"] for row in _rows()}


@lru_cache(maxsize=1)
def beyond_one_beat() -> frozenset[str]:
    """Statements a median beat cannot carry: PTB-XL's rhythm statements (rate, regularity, the
    atrial rhythm) and ``SEQUENCE_STATEMENTS``. Beat models mark them, and qLST does not explain them."""
    rhythm = {row["code"] for row in _rows() if "rhythm" in row["kind"].split(";")}
    return frozenset(rhythm | set(SEQUENCE_STATEMENTS))


@lru_cache(maxsize=2)
def statement_groups(column: str) -> dict[str, str]:
    """``{statement: group}`` from the shipped table's ``column`` ("diagnostic_class" or "diagnostic_subclass"),
    for the statements that have one (PTB-XL gives a group to its diagnostic statements only)."""
    if column not in GROUP_COLUMNS:
        raise ECGError(TABLE, f"no statement grouping {column!r}; use one of {GROUP_COLUMNS}")
    return {row["code"]: row[column] for row in _rows() if row[column] and row["kind"]}  # kind-less rows: the groups


def describe(code: str) -> str:
    """The plain-language description of a statement code; ``""`` for a code PTB-XL does not define."""
    return descriptions().get(str(code), "")


def description_rows(statements_csv: str | os.PathLike) -> list[dict[str, str]]:
    """The table's rows from PTB-XL's ``scp_statements.csv``: one per statement (its ``description`` and
    flags as given), then the classes and subclasses of ``GROUPS`` that are not statements themselves."""
    import pandas as pd

    path = Path(statements_csv)
    try:
        table = pd.read_csv(path, index_col=0)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ECGError(path, f"cannot read csv: {exc}") from exc
    missing = {"description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass",
               "Statement Category"} - set(table.columns)
    if missing:
        raise ECGError(path, f"not PTB-XL's scp_statements.csv: missing column(s) {sorted(missing)}")

    def text(value) -> str:
        return "" if pd.isna(value) else str(value).strip()

    rows = []
    for code, row in table.iterrows():
        kind = ";".join(k for k in ("diagnostic", "form", "rhythm") if text(row[k]) in ("1", "1.0"))
        rows.append({"code": str(code), "description": text(row["description"]), "kind": kind,
                     "diagnostic_class": text(row["diagnostic_class"]),
                     "diagnostic_subclass": text(row["diagnostic_subclass"]),
                     "category": text(row["Statement Category"])})
    groups = {text(v) for column in ("diagnostic_class", "diagnostic_subclass") for v in table[column]} - {""}
    unnamed = sorted(groups - set(table.index) - set(GROUPS))
    if unnamed:
        raise ECGError(path, f"diagnostic group(s) {unnamed} have no description in ecglens.statements.GROUPS")
    rows += [{"code": code, "description": words, "kind": kind, "diagnostic_class": "", "diagnostic_subclass": "",
              "category": "diagnostic " + kind} for code, (words, kind) in GROUPS.items()
             if code in groups and code not in table.index]
    return rows


def write_descriptions(statements_csv: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the description table derived from ``statements_csv`` to ``out`` (atomically)."""
    from .atomic import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(description_rows(statements_csv))
    return write_text_atomic(out, buffer.getvalue())
