"""The clinician review schema for prototypes: one rating per prototype, saved as CSV rows.

As in ProtoECGNet's clinician review, a reviewer scores each prototype's source
snippet for how representative it is of its statement and how clear it is (1-5
each) and may leave a comment. ``ecglens prototypes`` writes an empty sheet in
this schema; the viewer's review form appends rows to the same kind of file.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import ECGError

SCORE_RANGE = (1, 5)
MAX_COMMENT = 2000


@dataclass(frozen=True)
class PrototypeRating:
    """One reviewer's rating of one prototype. ``prototype`` is the gallery's id
    (``<branch>/<index>``); scores are ``None`` on an unrated sheet row."""

    prototype: str
    branch: str
    statement: str
    representativeness: int | None = None
    clarity: int | None = None
    comment: str = ""
    reviewer: str = ""

    def __post_init__(self):
        for name in ("representativeness", "clarity"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not SCORE_RANGE[0] <= value <= SCORE_RANGE[1]):
                raise ValueError(f"{name} must be an integer from {SCORE_RANGE[0]} to {SCORE_RANGE[1]}, got {value!r}")
        if len(self.comment) > MAX_COMMENT:
            raise ValueError(f"comment is {len(self.comment)} characters; at most {MAX_COMMENT}")


RATING_FIELDS = tuple(f.name for f in fields(PrototypeRating))


def _score(path, row: int, name: str, text: str) -> int | None:
    if text.strip() == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ECGError(path, f"row {row}: {name} {text!r} is not an integer") from None


def read_ratings(path: str | os.PathLike) -> list[PrototypeRating]:
    """The ratings in a sheet; a missing column or an out-of-range score is an ``ECGError`` naming the row."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in RATING_FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise ECGError(path, f"not a rating sheet: missing columns {', '.join(missing)}")
        out = []
        for i, row in enumerate(reader, start=2):
            values = {k: row[k] or "" for k in RATING_FIELDS}
            for name in ("representativeness", "clarity"):
                values[name] = _score(path, i, name, values[name])
            try:
                out.append(PrototypeRating(**values))
            except ValueError as e:
                raise ECGError(path, f"row {i}: {e}") from None
    return out


def write_ratings(path: str | os.PathLike, ratings: list[PrototypeRating]) -> Path:
    """Write a whole sheet atomically (header first; unrated scores as empty cells)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RATING_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in ratings:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    return write_text_atomic(path, buf.getvalue())


def append_ratings(path: str | os.PathLike, ratings: list[PrototypeRating]) -> Path:
    """Add ratings to a sheet (created if absent), rewriting it atomically so a crash leaves the old sheet."""
    path = Path(path)
    existing = read_ratings(path) if path.exists() else []
    return write_ratings(path, existing + list(ratings))
