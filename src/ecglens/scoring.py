"""Scoring a model against labels, the one place the CLI and the benchmarks call: ``evaluate`` on a PTB-XL
fold, ``evaluate_records`` on labelled records of any readable format (external validation), and the
score/label tables ``evaluate --predictions`` reads."""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ECGError

PREDICT_LONG_COLUMNS = ("record", "statement", "probability")  # the rows ``ecglens predict -o out.csv`` writes


@dataclass
class Evaluation:
    """A model scored on one fold or one set of records: the report (macro AUROC, per label, Fmax, bootstrap,
    prevalence baseline, calibration, calls at thresholds; see ``metrics.evaluate_predictions``), the scores it
    was computed from, and what could not be scored."""

    report: dict[str, Any]
    records: list[str]
    labels: list[str]
    y_true: np.ndarray
    y_score: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def macro_auroc(self) -> float | None:
        return self.report["macro_auroc"]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.report}


def evaluate(model, data: str | os.PathLike, fold: int = 10, *, rate: int = 100,
             cache_dir: str | os.PathLike | None = None, bootstrap: str | os.PathLike | np.ndarray | None = None,
             n_resamples: int | None = None, seed: int = 0, alpha: float = 0.90, batch_size: int = 256,
             train_folds: Sequence[int] | None = None, progress: bool = False) -> Evaluation:
    """Score ``model`` (a ``Model``, a ``Classifier`` or anything ``load_model`` takes) on PTB-XL fold ``fold``
    with its own label set and preprocessing.

    ``bootstrap`` is an array of resample indices, or a ``.npy`` path read if it exists and else drawn
    (``n_resamples``, ``seed``, redrawn until every scored label stays scorable) and saved there, so every
    model is scored on the same resamples. The prevalence baseline uses ``train_folds`` (default PTB-XL's
    1-8). Calls are scored at the model's stored thresholds (and only its assessable statements, where it
    marks them). Records the model cannot judge are listed in ``source["unscored"]`` and scored at the
    training prevalence.
    """
    from .datasets import PTBXL, TRAIN_FOLDS
    from .metrics import evaluate_predictions

    model, clf, label_set = _classifier(model, batch_size)
    names = [str(n) for n in clf.labels]

    ds = PTBXL(data, sampling_rate=rate)
    split = ds.load(label_set, folds=(fold,), pipeline=clf.pipeline, cache_dir=cache_dir, progress=progress)
    y_true = np.asarray(split.y, dtype=np.float64)[:, label_columns(split.label_names, names, f"fold {fold} labels")]
    y_score, unscored = fold_scores(clf, split, batch_size)
    order = np.argsort(np.asarray(split.ecg_ids), kind="stable")  # bootstrap indices refer to sorted ids
    records, y_true, y_score = [str(int(split.ecg_ids[i])) for i in order], y_true[order], y_score[order]

    train = ds.labels(label_set, tuple(train_folds or TRAIN_FOLDS))
    y_train = train.y[:, label_columns(train.names, names, "training labels")] if len(train.ecg_ids) else None
    indices = _resamples(bootstrap, y_true, n_resamples, seed)
    report = evaluate_predictions(y_true, y_score, names, indices, y_train, alpha=alpha, **_operating_point(clf))
    source = {"mode": "model", "model": str(getattr(model, "directory", "")), "data": str(data), "fold": fold,
              "rate": rate, "label_set": label_set, "pipeline": clf.pipeline.to_dict(),
              "n_train": int(len(train.ecg_ids)),
              "skipped": {"count": len(split.skipped), "records": [{"ecg_id": i, "reason": r} for i, r in split.skipped]},
              "dropped_unlabelled": {"count": len(split.dropped), "records": [int(i) for i in split.dropped]},
              "unscored": {"count": len(unscored), "records": unscored}}
    if bootstrap is not None and not isinstance(bootstrap, np.ndarray):
        source["bootstrap_file"] = str(bootstrap)
    return Evaluation(report, records, names, y_true, y_score, source)


def evaluate_records(model, records: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                     rate: int = 100, folds: Sequence[int] | None = None,
                     bootstrap: str | os.PathLike | np.ndarray | None = None, n_resamples: int | None = None,
                     seed: int = 0, alpha: float = 0.90, batch_size: int = 64, progress: bool = False) -> Evaluation:
    """Score ``model`` on the labelled records in directory ``records`` (any readable format), on the
    statements both the model and the labels' vocabulary know (external validation).

    Labels come from ``labels`` (a table as ``read_table`` reads; a record's id is its path below the
    directory without suffix, ``A0001`` for ``DIR/A0001.hea``), else from the PTB-XL layout when the directory
    holds ``ptbxl_database.csv`` (records at ``rate`` Hz, ``folds`` or all, the model's label set), else from
    each record: the challenge format's ``#Dx`` SNOMED-CT codes through the package map, whose statements are
    the vocabulary (a statement is covered when some code maps to it). Records that cannot be read, carry no
    labels or that the model cannot judge are listed and counted in ``source``, never skipped silently; the
    SNOMED codes that map to no statement are counted by the records carrying each. ``bootstrap`` is an array
    or a ``.npy`` path as for ``evaluate``; None draws ``n_resamples`` (default 1000) resamples from ``seed``.
    """
    from tqdm import tqdm

    from .metrics import evaluate_predictions

    model, clf, label_set = _classifier(model, batch_size)
    found = _labelled_source(Path(records), labels, rate, folds, label_set)
    shared = [str(n) for n in clf.labels if str(n) in found.vocabulary]
    if not shared:
        raise ECGError(records, f"the model's statements and the labels' vocabulary ({found.labels_from}) share none")
    column = {n: j for j, n in enumerate(shared)}
    model_column = label_columns([str(n) for n in clf.labels], shared, "model labels")
    ids, truth, scores, unmapped = [], [], [], Counter()
    unreadable, unlabelled, unscored = list(found.unreadable), list(found.unlabelled), []
    for start in tqdm(range(0, len(found.ids), batch_size), desc="evaluate", unit="batch", disable=not progress):
        batch = []
        for rid in found.ids[start:start + batch_size]:
            try:
                ecg = found.read(rid)
            except Exception as exc:  # every failure is reported and counted, whatever raised it
                unreadable.append((rid, exc.problem if isinstance(exc, ECGError) else f"{type(exc).__name__}: {exc}"))
                continue
            statements = found.known.get(rid) if found.known is not None else ecg.labels
            if statements is None:
                unlabelled.append((rid, "the record carries no labels (no challenge #Dx line)"))
                continue
            unmapped.update(set(ecg.metadata.get("snomed_unmapped", ())))
            batch.append((rid, ecg, statements))
        inputs = []
        for (rid, _, statements), x in zip(batch, preprocess_each(clf, [ecg for _, ecg, _ in batch])):
            if isinstance(x, ECGError):
                unscored.append((rid, x.problem))
                continue
            inputs.append(x)
            ids.append(rid)
            row = np.zeros(len(shared))
            row[[column[s] for s in statements if s in column]] = 1.0
            truth.append(row)
        if inputs:
            scores.append(np.asarray(clf.predict_inputs(inputs), dtype=np.float64)[:, model_column])
    if not ids:
        raise ECGError(records, f"no labelled record could be scored ({len(unreadable)} unreadable, "
                                f"{len(unlabelled)} unlabelled, {len(unscored)} not judged by the model)")
    order = record_order(ids)  # bootstrap indices refer to sorted record ids
    ids, y_true, y_score = [ids[i] for i in order], np.asarray(truth)[order], np.concatenate(scores)[order]
    indices = _resamples(bootstrap, y_true, n_resamples, seed, default=True)
    report = evaluate_predictions(y_true, y_score, shared, indices, alpha=alpha,
                                  **_operating_point(clf, model_column))
    source = {"mode": "records", "model": str(getattr(model, "directory", "")), "records": str(records),
              "labels_from": found.labels_from, "label_set": label_set,
              "n_listed": len(found.ids) + len(found.unreadable) + len(found.unlabelled),  # in DIR or its labels
              "shared_statements": shared,
              "n_without_shared_statement": int((y_true.sum(axis=1) == 0).sum()),
              "model_only_statements": [str(n) for n in clf.labels if str(n) not in column],
              "unreadable": _listed(unreadable), "unlabelled": _listed(unlabelled), "unscored": _listed(unscored),
              "unmapped_snomed": {"count": len(unmapped),
                                  "codes": [{"code": c, "n_records": n} for c, n in
                                            sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0]))]}}
    if bootstrap is not None and not isinstance(bootstrap, np.ndarray):
        source["bootstrap_file"] = str(bootstrap)
    return Evaluation(report, ids, shared, y_true, y_score, source)


@dataclass
class _Source:
    """Records to score and where their labels come from: ``read(id) -> ECG``; ``known`` maps an id to its
    statements (None: each record carries its own); ``vocabulary`` the statements the labels can express;
    records already known to be unreadable or unlabelled are listed ``(id, problem)``."""

    ids: list[str]
    read: Callable[[str], Any]
    known: dict[str, tuple[str, ...]] | None
    vocabulary: set[str]
    labels_from: str
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    unlabelled: list[tuple[str, str]] = field(default_factory=list)


def _labelled_source(directory: Path, labels, rate: int, folds, label_set: str) -> _Source:
    """The records of ``directory`` with their labels' origin (see ``evaluate_records``)."""
    from .io import find_records, read_ecg
    from .io.snomed import snomed_to_scp_table

    if not directory.is_dir():
        raise ECGError(directory, "not a directory of records")
    if labels is None and (directory / "ptbxl_database.csv").is_file():
        from .datasets import PTBXL

        ds = PTBXL(directory, sampling_rate=rate)
        table = ds.labels(label_set, folds)
        known = {str(i): tuple(n for n, v in zip(table.names, row) if v) for i, row in zip(table.ecg_ids, table.y)}
        return _Source(list(known), lambda rid: ds.read(int(rid)), known, set(table.names),
                       f"{directory / 'ptbxl_database.csv'} ({label_set})",
                       unreadable=[(str(i), f"listed but missing at {rate} Hz: {p}") for i, p in ds.missing],
                       unlabelled=[(str(i), f"no statement of the {label_set!r} label set") for i in table.dropped])
    paths = {p.relative_to(directory).with_suffix("").as_posix(): p for p in find_records(directory)}
    if labels is None:
        return _Source(sorted(paths), lambda rid: read_ecg(paths[rid]), None, set(snomed_to_scp_table().values()),
                       "each record's SNOMED-CT #Dx codes through the package map (data/snomed_to_scp.csv)")
    table = read_table(labels)
    if not np.isin(table.values, (0.0, 1.0)).all():
        raise ECGError(labels, "labels must be 0 or 1")
    known = {r: tuple(n for n, v in zip(table.names, row) if v) for r, row in zip(table.records, table.values)}
    return _Source([r for r in table.records if r in paths], lambda rid: read_ecg(paths[rid]), known,
                   set(table.names), str(labels),
                   unreadable=[(r, f"labelled in {labels} but no record file in {directory}")
                               for r in table.records if r not in paths],
                   unlabelled=[(r, f"no row in {labels}") for r in sorted(paths) if r not in known])


def preprocess_each(clf, ecgs: list) -> list:
    """Every record's model input, or the ``ECGError`` it raised: batched (``preprocess_many``) where the
    classifier batches its pipeline; a batch with a failing record is redone record by record to find which
    (a classifier that preprocesses record by record is asked once per record)."""
    if getattr(clf, "batches_preprocessing", False):
        try:
            return clf.preprocess_many(ecgs)
        except ECGError:
            pass
    out = []
    for ecg in ecgs:
        try:
            out.append(clf.preprocess(ecg))
        except ECGError as exc:
            out.append(exc)
    return out


def fold_scores(clf, split, batch_size: int = 256) -> tuple[np.ndarray, list[list]]:
    """``(scores (n, k) in the classifier's label order, unscored [[ecg_id, reason], ...])`` of a cached
    split, predicted ``batch_size`` records at a time."""
    batches, unscored = [], []
    for start in range(0, len(split.ecg_ids), batch_size):
        chunk = np.asarray(split.signals[start:start + batch_size], dtype=np.float32)
        batches.append(np.asarray(clf.predict_batch(chunk, split.sampling_rate), dtype=np.float64))
        unscored += [[int(split.ecg_ids[start + i]), why] for i, why in getattr(clf, "skipped", [])]
    return (np.concatenate(batches) if batches else np.zeros((0, len(clf.labels)))), unscored


def _classifier(model, batch_size: int):
    """``(model, classifier, label set)`` for a ``Model``, a ``Classifier`` or anything ``load_model`` takes."""
    from .api import Model, load_model

    if batch_size < 1:
        raise ECGError(None, f"batch_size must be at least 1, got {batch_size}")
    if not isinstance(model, Model) and not hasattr(model, "predict_batch"):
        model = load_model(model)
    clf = model.loaded if isinstance(model, Model) else model
    if isinstance(model, Model) and not model.can_predict:
        raise ECGError(model.directory, f"a {model.kind.name} model cannot be evaluated: {model.kind.instead}")
    label_set = clf.config.get("label_set")
    if not isinstance(label_set, str):
        raise ECGError(None, f"the model's config names no label_set (got {label_set!r})")
    return model, clf, label_set


def _operating_point(clf, columns=None) -> dict[str, np.ndarray | None]:
    """The classifier's stored thresholds and assessable mask (when it has them), for ``columns`` of its labels."""
    out = {}
    for key in ("thresholds", "assessable"):
        value = getattr(clf, key, None)
        out[key] = None if value is None else np.asarray(value)[columns if columns is not None else slice(None)]
    return out


def _resamples(bootstrap, y_true: np.ndarray, n_resamples: int | None, seed: int, default: bool = False):
    """Bootstrap indices: the array given, the ``.npy`` file read or drawn (kept scorable for ``y_true``), or
    with ``default`` and nothing given ``n_resamples`` (default 1000, 0 for none) drawn in memory; else None."""
    from .metrics.bootstrap import DEFAULT_RESAMPLES, bootstrap_indices, get_or_make_bootstrap

    if isinstance(bootstrap, np.ndarray):
        return bootstrap
    if bootstrap is not None:
        return get_or_make_bootstrap(bootstrap, len(y_true), n_resamples, seed, y_true=y_true)
    if default and n_resamples != 0:
        return bootstrap_indices(len(y_true), DEFAULT_RESAMPLES if n_resamples is None else n_resamples, seed,
                                 y_true=y_true)
    return None


def _listed(items: list[tuple[str, str]]) -> dict:
    return {"count": len(items), "records": [{"record": r, "problem": why} for r, why in items]}


@dataclass
class ScoreTable:
    """Values per record and statement read from a file: ``values`` (records x names); ``thresholds`` (names,)
    when the file carries them (``ecglens predict -o`` output), else None."""

    records: list[str]
    names: list[str]
    values: np.ndarray
    thresholds: np.ndarray | None = None


def read_table(path) -> ScoreTable:
    """Scores or labels from a file: a wide CSV (``record`` then one column per statement), an NPZ (arrays
    ``record``, ``label_names``, ``values``), or ``ecglens predict -o`` output as written (long CSV rows
    ``record,statement,probability,threshold,positive``, or its JSON), pivoted to records x statements with
    the stored thresholds."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ECGError(path, "no such file")
    thresholds = None
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = {"record", "label_names", "values"} - set(z.files)
                if missing:
                    raise ECGError(path, f"missing array(s) {sorted(missing)}; need record, label_names, values")
                records, names, values = z["record"], z["label_names"], z["values"]
        except (OSError, ValueError) as exc:
            raise ECGError(path, f"cannot read npz: {exc}") from exc
        records, names = [str(r) for r in records.ravel()], [str(n) for n in names.ravel()]
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ECGError(path, f"values are not numeric: {exc}") from exc
    elif suffix in (".csv", ".json"):
        frame = _predict_json_rows(path) if suffix == ".json" else _read_csv(path)
        if tuple(frame.columns[:3]) == PREDICT_LONG_COLUMNS:
            frame, thresholds = _pivot_long(frame, path)
        if not len(frame.columns) or frame.columns[0] != "record":
            raise ECGError(path, "the first column must be named 'record'")
        records, names = frame["record"].astype(str).tolist(), [str(c) for c in frame.columns[1:]]
        bad = [c for c in frame.columns[1:] if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ECGError(path, f"non-numeric values in column(s) {bad[:5]}")
        values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    else:
        raise ECGError(path, "expected a .csv, .json or .npz file")
    if values.ndim != 2 or values.shape != (len(records), len(names)) or not names or not records:
        raise ECGError(path, f"values shaped {values.shape} for {len(records)} records and {len(names)} statements")
    if not np.isfinite(values).all():
        raise ECGError(path, f"{int((~np.isfinite(values)).sum())} empty, NaN or infinite values")
    for what, items in (("record", records), ("statement", names)):
        dupes = sorted(x for x, c in Counter(items).items() if c > 1)
        if dupes:
            raise ECGError(path, f"repeated {what} id(s): {dupes[:5]}")
    return ScoreTable(records, names, values, thresholds)


def _read_csv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, dtype={"record": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ECGError(path, f"cannot read csv: {exc}") from exc


def _predict_json_rows(path: Path):
    """The long rows of an ``ecglens predict -o out.json`` document."""
    import pandas as pd

    try:
        doc = json.loads(path.read_text())
        rows = [(str(rec["record"]), str(p["statement"]), p["probability"])
                for rec in doc["records"] for p in rec["predictions"]]
        stored = doc.get("thresholds") or {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ECGError(path, f"not an 'ecglens predict' JSON document ({type(exc).__name__}: {exc})") from exc
    frame = pd.DataFrame(rows, columns=list(PREDICT_LONG_COLUMNS))
    frame["threshold"] = frame["statement"].map(stored)
    return frame


def _pivot_long(frame, path: Path):
    """Long rows (record, statement, probability[, threshold]) -> the wide frame and per-statement thresholds."""
    if frame.duplicated(["record", "statement"]).any():
        raise ECGError(path, "a (record, statement) pair repeats")
    wide = frame.pivot(index="record", columns="statement", values="probability")
    missing = int(wide.isna().sum().sum())
    if missing:
        raise ECGError(path, f"{missing} (record, statement) pairs have no row: write 'ecglens predict -o' "
                             "without --top so that every statement of every record is there")
    thresholds = None
    if "threshold" in frame.columns and frame["threshold"].notna().all():
        per = frame.groupby("statement")["threshold"]
        if (per.nunique() > 1).any():
            raise ECGError(path, "a statement has more than one threshold")
        thresholds = per.first().reindex(wide.columns).to_numpy(dtype=np.float64)
    return wide.reset_index(), thresholds


def record_order(records: list[str]) -> np.ndarray:
    """Indices sorting record ids numerically when all are integers, else as text (the bootstrap order)."""
    try:
        keys = [int(r) for r in records]
    except ValueError:
        keys = records
    return np.asarray(sorted(range(len(records)), key=keys.__getitem__), dtype=np.int64)


def label_columns(have: Sequence[str], want: Sequence[str], where) -> list[int]:
    """Column of each wanted name in ``have``; ECGError naming the missing ones."""
    index = {n: i for i, n in enumerate(have)}
    missing = [n for n in want if n not in index]
    if missing:
        raise ECGError(where, f"{len(missing)} statement(s) missing: {missing[:10]}")
    return [index[n] for n in want]
