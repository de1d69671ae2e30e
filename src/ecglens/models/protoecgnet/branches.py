"""Which ProtoECGNet branch reads which statement.

The paper routes each of PTB-XL's 71 statements to one of three branches: rhythm (1D CNN,
record-level prototypes), morphology (2D CNN, ~1 s prototypes that slide along time) and
global (2D CNN, whole-record prototypes). The routing is data, bundled as
``ecglens/data/protoecgnet_branches.csv`` (columns ``statement,branch``); other label sets
(e.g. the five superclasses) pass their own ``{statement: branch}`` mapping instead.
"""
from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Mapping, Sequence

from ...errors import ECGError

BRANCHES: tuple[str, ...] = ("rhythm", "morphology", "global")
TABLE_NAME = "data/protoecgnet_branches.csv"


def load_branch_table() -> dict[str, str]:
    """The bundled ``{statement: branch}`` table, validated (each statement exactly once)."""
    ref = resources.files("ecglens").joinpath(TABLE_NAME)
    return parse_branch_table(ref.read_text(encoding="utf-8"), source=TABLE_NAME)


def parse_branch_table(text: str, source: str = "<branch table>") -> dict[str, str]:
    """Parse ``statement,branch`` CSV text; raise ECGError on a bad header, branch or duplicate."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["statement", "branch"]:
        raise ECGError(source, f"header must be 'statement,branch', got {header!r}")
    mapping: dict[str, str] = {}
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise ECGError(source, f"line {line_no}: expected 2 columns, got {len(row)}")
        statement, branch = row[0].strip(), row[1].strip()
        if statement in mapping:
            raise ECGError(source, f"line {line_no}: statement {statement!r} listed twice")
        mapping[statement] = branch
    return validate_branch_map(mapping, source=source)


def validate_branch_map(mapping: Mapping[str, str], source: str = "<branch map>") -> dict[str, str]:
    """Check every branch name is one of ``BRANCHES``; return a plain dict copy."""
    if not mapping:
        raise ECGError(source, "branch map is empty")
    bad = {s: b for s, b in mapping.items() if b not in BRANCHES}
    if bad:
        raise ECGError(source, f"unknown branch for {bad}; branches are {list(BRANCHES)}")
    return dict(mapping)


def branch_indices(labels: Sequence[str], mapping: Mapping[str, str] | None = None) -> dict[str, list[int]]:
    """Per-branch positions into ``labels``, in ``BRANCHES`` order; empty branches are absent.

    ``mapping`` defaults to the bundled table. A label missing from the mapping, or a label
    listed twice, raises ECGError.
    """
    source = "<branch map>" if mapping is not None else TABLE_NAME
    table = load_branch_table() if mapping is None else validate_branch_map(mapping)
    labels = list(labels)
    if not labels:
        raise ECGError(source, "label list is empty")
    dupes = sorted({s for s in labels if labels.count(s) > 1})
    if dupes:
        raise ECGError(source, f"labels listed more than once: {dupes}")
    unknown = [s for s in labels if s not in table]
    if unknown:
        raise ECGError(source, f"no branch for statements {unknown}")
    out = {b: [i for i, s in enumerate(labels) if table[s] == b] for b in BRANCHES}
    return {b: idx for b, idx in out.items() if idx}
