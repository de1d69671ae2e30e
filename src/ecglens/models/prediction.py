"""The typed output of ``Model.predict``: probabilities, the thresholds they are called at, and the calls."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prediction:
    """Probabilities of ``labels`` for ``records`` and the calls at each statement's threshold.

    ``probabilities`` is (n, k), calibrated where the model stores a
    calibration; ``thresholds`` (k,) are the model's stored operating
    thresholds; ``assessable`` (k,) marks the statements the model may call
    (the others are "not assessable": reported, never called); ``calls``
    (n, k) says which statements are called positive. ``skipped`` lists
    ``(row, reason)`` for records the model could not judge (no call).
    ``quality`` holds each record's quality report (``ecglens.quality``);
    a record that is not judgeable (flagged: implausible units, noise, flat
    leads, ...) keeps its probabilities for inspection but gets no call.
    """

    records: list[str]
    labels: list[str]
    probabilities: np.ndarray
    thresholds: np.ndarray
    model: str = ""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    assessable: np.ndarray | None = None
    quality: list[dict] | None = None

    def __post_init__(self):
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64).reshape(len(self.records), len(self.labels))
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64).reshape(len(self.labels))
        self.assessable = (np.ones(len(self.labels), dtype=bool) if self.assessable is None
                           else np.asarray(self.assessable, dtype=bool).reshape(len(self.labels)))

    @property
    def calls(self) -> np.ndarray:
        """(n, k) booleans: probability at or above the statement's threshold, only for assessable statements,
        never for a skipped or not judgeable record."""
        calls = (self.probabilities >= self.thresholds[None]) & self.assessable[None]
        calls[[row for row, _ in self.skipped]] = False
        calls[[i for i, q in enumerate(self.quality or ()) if q is not None and not q["judgeable"]]] = False
        return calls

    def select(self, rows) -> "Prediction":
        """The prediction of some records only (``rows``: indices), their skipped entries renumbered."""
        rows = [int(r) for r in rows]
        new = {old: i for i, old in enumerate(rows)}
        return Prediction([self.records[r] for r in rows], self.labels, self.probabilities[rows], self.thresholds,
                          self.model, [(new[r], why) for r, why in self.skipped if r in new], self.assessable,
                          None if self.quality is None else [self.quality[r] for r in rows])

    @classmethod
    def concat(cls, parts: list["Prediction"]) -> "Prediction":
        """One prediction from several of the same model, in order."""
        first, offset, skipped = parts[0], 0, []
        for part in parts:
            skipped += [(offset + r, why) for r, why in part.skipped]
            offset += len(part)
        quality = None if any(p.quality is None for p in parts) else [q for p in parts for q in p.quality]
        return cls([r for p in parts for r in p.records], first.labels,
                   np.concatenate([p.probabilities for p in parts]), first.thresholds, first.model, skipped,
                   first.assessable, quality)

    def __len__(self) -> int:
        return len(self.records)

    def top(self, row: int = 0, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable statements of one record, most probable first."""
        p = self.probabilities[row]
        return [(self.labels[j], float(p[j])) for j in np.argsort(-p, kind="stable")[:k]]

    def called(self, row: int = 0) -> list[str]:
        """The statements called positive for one record, most probable first."""
        calls = dict(zip(self.labels, self.calls[row]))
        return [s for s, _ in self.top(row, len(self.labels)) if calls[s]]

    def to_frame(self, long: bool = False):
        """A pandas DataFrame: one row per record and a column per statement, or with ``long=True`` one
        row per (record, statement) with probability, threshold and call (the layout ``predict -o`` writes)."""
        import pandas as pd

        if not long:
            return pd.DataFrame(self.probabilities, index=pd.Index(self.records, name="record"), columns=self.labels)
        n, k = self.probabilities.shape
        return pd.DataFrame({"record": np.repeat(self.records, k), "statement": np.tile(self.labels, n),
                             "probability": self.probabilities.ravel(), "threshold": np.tile(self.thresholds, n),
                             "positive": self.calls.ravel().astype(int)})

    def to_dict(self) -> dict:
        """JSON-ready: per record every statement's probability and call, plus the skipped records; ``descriptions``
        gives each statement's plain-language description (``ecglens.statements``)."""
        from ..statements import describe

        skipped = dict(self.skipped)
        calls = self.calls
        return {"model": self.model, "labels": list(self.labels),
                "descriptions": {s: describe(s) for s in self.labels},
                "thresholds": {s: float(t) for s, t in zip(self.labels, self.thresholds)},
                "not_assessable": [s for s, ok in zip(self.labels, self.assessable) if not ok],
                "records": [{"record": rec, "probabilities": {s: float(p) for s, p in zip(self.labels, probs)},
                             "called": [s for s, c in zip(self.labels, calls[i]) if c],
                             "not_judged": skipped.get(i),
                             "quality": None if self.quality is None else self.quality[i]}
                            for i, (rec, probs) in enumerate(zip(self.records, self.probabilities))],
                "skipped": {"count": len(self.skipped),
                            "records": [{"record": self.records[i], "reason": why} for i, why in self.skipped]}}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
