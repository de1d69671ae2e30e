"""PTB-XL: metadata, the benchmark label sets, stratified folds, cached signals.

Label sets follow the PTB-XL benchmark (Strodthoff et al. 2021, "Deep learning
for ECG analysis: benchmarks and insights from PTB-XL"): every SCP statement of
a record counts whatever its likelihood (0.0 included); the vocabulary comes
from ``scp_statements.csv``:

* ``all``: every statement (71)
* ``diagnostic``: statements with ``diagnostic == 1`` (44)
* ``subdiagnostic``: diagnostic statements mapped to ``diagnostic_subclass`` (23)
* ``superdiagnostic``: diagnostic statements mapped to ``diagnostic_class`` (5)
* ``form``: ``form == 1`` (19); ``rhythm``: ``rhythm == 1`` (12)

Label columns are sorted alphabetically (Python string order), so a model's
output ``k`` always means ``label_names(label_set)[k]``; records with no label of
the chosen set are dropped and reported. Folds 1-8 train, 9 validates, 10 tests
(``strat_fold``). Records listed in the csv but absent on disk at the chosen
rate are listed in ``missing``, logged and excluded, never silently.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import ECGError
from ..io import ECG, read_ecg
from ..preprocess import Pipeline
from .cache import SignalCache
from .codes import LABEL_SETS, PTBXL_SEX, TRAIN_FOLDS, parse_scp_codes

log = logging.getLogger(__name__)

RATES = (100, 500)
DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
_FILENAME_COLUMN = {100: "filename_lr", 500: "filename_hr"}
@dataclass
class LabelTable:
    """Multi-hot labels of one label set: row ``i`` is record ``ecg_ids[i]``."""

    ecg_ids: np.ndarray
    y: np.ndarray
    names: list[str]
    dropped: list[int] = field(default_factory=list)


@dataclass
class LabelledSplit:
    """Cached, preprocessed signals with their labels, ready for training or evaluation.

    ``signals`` is a read-only memory map (n, 12, T) float32; ``sampling_rate`` is
    the rate after the pipeline. ``skipped`` lists ``(ecg_id, reason)`` for
    records that could not be read; ``dropped`` the records without a label of
    the set.
    """

    ecg_ids: np.ndarray
    signals: np.ndarray
    y: np.ndarray
    label_names: list[str]
    sampling_rate: float
    pipeline: Pipeline
    skipped: list[tuple[int, str]] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ecg_ids, signals, y)``, the first ``limit`` records only when given (quick runs, tests)."""
        n = len(self.ecg_ids) if limit is None else min(int(limit), len(self.ecg_ids))
        return self.ecg_ids[:n], self.signals[:n], self.y[:n]


def jaccard_cooccurrence(y: np.ndarray) -> np.ndarray:
    """(k, k) Jaccard index of label columns: records with both / records with either.

    The diagonal is 1 for labels present at least once and 0 for labels that
    never occur (as is every pair whose union is empty).
    """
    b = (np.asarray(y) > 0).astype(np.float64)
    both = b.T @ b
    count = np.diag(both)
    either = count[:, None] + count[None, :] - both
    return np.divide(both, either, out=np.zeros_like(both), where=either > 0)


def _read_csv(path: Path, required: Iterable[str], **kwargs) -> pd.DataFrame:
    if not path.is_file():
        raise ECGError(path, "missing (expected in a PTB-XL directory)")
    try:
        df = pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ECGError(path, f"unreadable csv ({exc})") from exc
    absent = [c for c in required if c not in df.columns]
    if absent:
        raise ECGError(path, f"missing column(s) {absent}")
    return df


def _is_one(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce").fillna(0) == 1


class PTBXL:
    """One PTB-XL directory (PhysioNet layout) at one sampling rate (100 or 500 Hz)."""

    def __init__(self, root: str | os.PathLike, sampling_rate: int = 100):
        self.root = Path(root)
        if sampling_rate not in RATES:
            raise ECGError(self.root, f"PTB-XL comes at 100 or 500 Hz, not {sampling_rate!r}")
        self.sampling_rate = int(sampling_rate)
        self._database_csv = self.root / DATABASE_CSV
        db = _read_csv(self._database_csv, ("ecg_id", "scp_codes", "strat_fold", *_FILENAME_COLUMN.values()))
        if db["ecg_id"].duplicated().any():
            raise ECGError(self._database_csv, f"duplicate ecg_id(s) {db.loc[db['ecg_id'].duplicated(), 'ecg_id'].tolist()[:10]}")
        db = db.set_index("ecg_id").sort_index()
        db.index = db.index.astype(int)
        db["scp"] = [self._parse_scp(i, s) for i, s in zip(db.index, db["scp_codes"])]
        db["fold"] = pd.to_numeric(db["strat_fold"], errors="raise").astype(int)
        db["path"] = [self.root / str(f) for f in db[_FILENAME_COLUMN[self.sampling_rate]]]
        self._listed = db

        statements = _read_csv(self.root / STATEMENTS_CSV, ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"), index_col=0)
        self.statements = statements
        self._label_map = self._build_label_maps(statements)
        unknown = sorted({c for scp in db["scp"] for c in scp} - set(statements.index))
        if unknown:
            log.warning("%s: statement code(s) %s are not in %s and are left out of every label set", self._database_csv, unknown, STATEMENTS_CSV)
        self.unknown_statements = unknown

        present = self._present(self.sampling_rate)
        self.missing: list[tuple[int, Path]] = [(int(i), p) for i, p, ok in zip(db.index, db["path"], present) if not ok]
        self.records: pd.DataFrame = db[present]
        if self.missing:
            first = ", ".join(str(i) for i, _ in self.missing[:5])
            log.warning(
                "%s: %d of %d records listed in %s are missing at %d Hz and are excluded (ecg_id %s%s); see PTBXL.missing",
                self.root, len(self.missing), len(db), DATABASE_CSV, self.sampling_rate, first, ", ..." if len(self.missing) > 5 else "",
            )

    def _parse_scp(self, ecg_id: int, text) -> dict:
        return parse_scp_codes(text, self._database_csv, ecg_id)

    @staticmethod
    def _build_label_maps(st: pd.DataFrame) -> dict[str, dict[str, str]]:
        """Statement code -> label name, per label set."""
        codes = [str(c) for c in st.index]
        diag = _is_one(st["diagnostic"]).to_numpy()
        form = _is_one(st["form"]).to_numpy()
        rhythm = _is_one(st["rhythm"]).to_numpy()

        def mapped(column: str) -> dict[str, str]:
            return {c: str(v) for c, v, d in zip(codes, st[column], diag) if d and isinstance(v, str) and v}

        return {
            "all": {c: c for c in codes},
            "diagnostic": {c: c for c, d in zip(codes, diag) if d},
            "subdiagnostic": mapped("diagnostic_subclass"),
            "superdiagnostic": mapped("diagnostic_class"),
            "form": {c: c for c, f in zip(codes, form) if f},
            "rhythm": {c: c for c, r in zip(codes, rhythm) if r},
        }

    def _present(self, rate: int) -> np.ndarray:
        """Whether each listed record's .hea and .dat exist at ``rate``."""
        paths = [str(self.root / str(f)) for f in self._listed[_FILENAME_COLUMN[rate]]]
        return np.array([os.path.isfile(p + ".hea") and os.path.isfile(p + ".dat") for p in paths], dtype=bool)

    def _check_label_set(self, label_set: str) -> None:
        if label_set not in LABEL_SETS:
            raise ECGError(None, f"unknown label set {label_set!r}; choose one of {', '.join(LABEL_SETS)}")

    def label_names(self, label_set: str) -> list[str]:
        """The full vocabulary of a label set, sorted alphabetically (the column order of ``y``)."""
        self._check_label_set(label_set)
        return sorted(set(self._label_map[label_set].values()))

    def record_labels(self, ecg_id: int, label_set: str = "all") -> list[str]:
        """The labels of one record in a label set, sorted."""
        self._check_label_set(label_set)
        mapping = self._label_map[label_set]
        return sorted({mapping[c] for c in self._listed.at[int(ecg_id), "scp"] if c in mapping})

    def _select(self, folds) -> pd.DataFrame:
        if folds is None:
            return self.records
        folds = (folds,) if isinstance(folds, (int, np.integer)) else tuple(int(f) for f in folds)
        return self.records[self.records["fold"].isin(folds)]

    def labels(self, label_set: str, folds=None) -> LabelTable:
        """Multi-hot labels of the records in ``folds`` (all when None); unlabelled records are dropped."""
        names = self.label_names(label_set)
        column = {n: k for k, n in enumerate(names)}
        mapping = self._label_map[label_set]
        rows = self._select(folds)
        kept, hot, dropped = [], [], []
        for ecg_id, scp in zip(rows.index, rows["scp"]):
            cols = sorted({column[mapping[c]] for c in scp if c in mapping})
            if cols:
                kept.append(int(ecg_id))
                hot.append(cols)
            else:
                dropped.append(int(ecg_id))
        y = np.zeros((len(kept), len(names)), dtype=np.float32)
        for i, cols in enumerate(hot):
            y[i, cols] = 1.0
        if dropped:
            log.info("%s: %d record(s) have no %r label and are dropped", self.root, len(dropped), label_set)
        return LabelTable(np.asarray(kept, dtype=np.int64), y, names, dropped)

    def label_cooccurrence(self, label_set: str, folds=None) -> np.ndarray:
        """(k, k) Jaccard co-occurrence of the label set's labels on ``folds``."""
        return jaccard_cooccurrence(self.labels(label_set, folds).y)

    def header_path(self, ecg_id: int) -> Path:
        """The ``.hea`` of a record at this rate; ECGError if it is not available."""
        ecg_id = int(ecg_id)
        if ecg_id in self.records.index:
            return self.records.at[ecg_id, "path"].with_suffix(".hea")
        if ecg_id in self._listed.index:
            p = self._listed.at[ecg_id, "path"].with_suffix(".hea")
            raise ECGError(p, f"listed in {DATABASE_CSV} but missing at {self.sampling_rate} Hz")
        raise ECGError(self._database_csv, f"no record with ecg_id {ecg_id}")

    def record_files(self, ecg_id: int) -> tuple[Path, Path]:
        """The ``.hea`` and ``.dat`` a record is read from at this rate (their stamps key its cached signal)."""
        header = self.header_path(ecg_id)
        return header, header.with_suffix(".dat")

    def read(self, ecg_id: int) -> ECG:
        """One record: signal via ``read_ecg``, its statements as ``labels``, PTB-XL facts in ``metadata``."""
        path = self.header_path(ecg_id)
        ecg = read_ecg(path, sampling_rate=self.sampling_rate)
        row = self.records.loc[int(ecg_id)]
        age = pd.to_numeric(row.get("age"), errors="coerce")
        sex = pd.to_numeric(row.get("sex"), errors="coerce")
        meta = {
            **ecg.metadata,
            "ecg_id": int(ecg_id),
            "patient_id": None if pd.isna(row.get("patient_id")) else int(row["patient_id"]),
            "age": None if pd.isna(age) else int(age) if float(age).is_integer() else float(age),
            "sex": None if pd.isna(sex) else PTBXL_SEX.get(int(sex), str(sex)),
            "fold": int(row["fold"]),
            "scp_codes": dict(row["scp"]),
        }
        return replace(ecg, labels=tuple(sorted(row["scp"])), metadata=meta)

    def identity(self) -> dict:
        """What identifies this copy of the data in a cache key: resolved root, csv size and mtime."""
        st = self._database_csv.stat()
        return {"root": str(self.root.resolve()), "csv_size": st.st_size, "csv_mtime_ns": st.st_mtime_ns}

    def load(
        self,
        label_set: str = "all",
        folds=TRAIN_FOLDS,
        pipeline: Pipeline | None = None,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> LabelledSplit:
        """Preprocessed signals and labels of ``folds``, through the memory-mapped cache.

        The first call decodes every record (WFDB) and applies ``pipeline``; later
        calls with the same data, rate, pipeline and records (down to each record
        file's size and modification time) open the cache.
        Records the reader rejects are listed in ``skipped``.
        """
        pipeline = pipeline if pipeline is not None else Pipeline()
        table = self.labels(label_set, folds)
        if not len(table.ecg_ids):
            raise ECGError(self.root, f"no record with a {label_set!r} label in folds {folds}")
        key_parts = {
            "dataset": "ptb-xl",
            "identity": self.identity(),
            "source_rate": self.sampling_rate,
            "pipeline": pipeline.to_dict(),
            "fingerprint": pipeline.fingerprint(),
        }

        def load_fn(ecg_id: int) -> np.ndarray:
            ecg = read_ecg(self.header_path(ecg_id), sampling_rate=self.sampling_rate)
            return pipeline.apply_signal(ecg.signal, ecg.sampling_rate)[0]

        signals, ids, skipped = SignalCache(cache_dir).get_or_build(
            key_parts, table.ecg_ids.tolist(), load_fn, progress=progress, describe=lambda i: str(self.header_path(i)),
            sources=self.record_files,
        )
        if skipped:
            log.warning("%s: %d record(s) could not be read and are skipped: %s", self.root, len(skipped),
                        "; ".join(f"{i}: {r}" for i, r in skipped[:5]))
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(table.ecg_ids, ids)
        rate = pipeline.output_rate or float(self.sampling_rate)
        return LabelledSplit(ids, signals, table.y[rows], table.names, rate, pipeline, [(int(i), r) for i, r in skipped], table.dropped)

    def summary(self) -> dict:
        """Counts per fold and per rate, missing records, label-set sizes (JSON-ready)."""
        folds = self.records["fold"].value_counts().sort_index()
        label_sets = {}
        for name in LABEL_SETS:
            table = self.labels(name)
            label_sets[name] = {
                "vocabulary": len(table.names),
                "labels_present": int((table.y.sum(axis=0) > 0).sum()),
                "records_kept": int(len(table.ecg_ids)),
                "records_dropped": len(table.dropped),
            }
        return {
            "root": str(self.root),
            "sampling_rate": self.sampling_rate,
            "listed": int(len(self._listed)),
            "records": int(len(self.records)),
            "per_fold": {int(f): int(n) for f, n in folds.items()},
            "per_rate": {r: int(self._present(r).sum()) for r in RATES},
            "missing": {"count": len(self.missing), "ecg_ids": [i for i, _ in self.missing]},
            "unknown_statements": self.unknown_statements,
            "label_sets": label_sets,
        }
