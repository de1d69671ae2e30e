"""``ecglens.evaluate``: the one function that scores a model on a PTB-XL fold (the CLI and the benchmark call it)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ECGError


@dataclass
class Evaluation:
    """A model scored on one fold: the report (macro AUROC, per label, Fmax, bootstrap, prevalence baseline;
    see ``metrics.evaluate_predictions``), the scores it was computed from, and what could not be scored."""

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
    (``n_resamples``, ``seed``) and saved there, so every model is scored on the same resamples. The
    prevalence baseline uses ``train_folds`` (default PTB-XL's 1-8). Records the model cannot judge are
    listed in ``source["unscored"]`` and scored at the training prevalence.
    """
    from .api import Model, load_model
    from .datasets import PTBXL, TRAIN_FOLDS
    from .metrics import evaluate_predictions, get_or_make_bootstrap

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
    names = [str(n) for n in clf.labels]

    ds = PTBXL(data, sampling_rate=rate)
    split = ds.load(label_set, folds=(fold,), pipeline=clf.pipeline, cache_dir=cache_dir, progress=progress)
    y_true = np.asarray(split.y, dtype=np.float64)[:, label_columns(split.label_names, names, f"fold {fold} labels")]
    batches, unscored = [], []
    for start in range(0, len(split.ecg_ids), batch_size):
        chunk = np.asarray(split.signals[start:start + batch_size], dtype=np.float32)
        batches.append(np.asarray(clf.predict_batch(chunk, split.sampling_rate), dtype=np.float64))
        unscored += [[int(split.ecg_ids[start + i]), why] for i, why in getattr(clf, "skipped", [])]
    y_score = np.concatenate(batches) if batches else np.zeros((0, len(names)))
    order = np.argsort(np.asarray(split.ecg_ids), kind="stable")  # bootstrap indices refer to sorted ids
    records, y_true, y_score = [str(int(split.ecg_ids[i])) for i in order], y_true[order], y_score[order]

    train = ds.labels(label_set, tuple(train_folds or TRAIN_FOLDS))
    y_train = train.y[:, label_columns(train.names, names, "training labels")] if len(train.ecg_ids) else None
    indices = bootstrap
    if bootstrap is not None and not isinstance(bootstrap, np.ndarray):
        indices = get_or_make_bootstrap(bootstrap, len(records), n_resamples, seed)
    report = evaluate_predictions(y_true, y_score, names, indices, y_train, alpha=alpha)
    source = {"mode": "model", "model": str(getattr(model, "directory", "")), "data": str(data), "fold": fold,
              "rate": rate, "label_set": label_set, "pipeline": clf.pipeline.to_dict(),
              "n_train": int(len(train.ecg_ids)),
              "skipped": {"count": len(split.skipped), "records": [{"ecg_id": i, "reason": r} for i, r in split.skipped]},
              "dropped_unlabelled": {"count": len(split.dropped), "records": [int(i) for i in split.dropped]},
              "unscored": {"count": len(unscored), "records": unscored}}
    if bootstrap is not None and not isinstance(bootstrap, np.ndarray):
        source["bootstrap_file"] = str(bootstrap)
    return Evaluation(report, records, names, y_true, y_score, source)


def label_columns(have: Sequence[str], want: Sequence[str], where) -> list[int]:
    """Column of each wanted name in ``have``; ECGError naming the missing ones."""
    index = {n: i for i, n in enumerate(have)}
    missing = [n for n in want if n not in index]
    if missing:
        raise ECGError(where, f"{len(missing)} statement(s) missing: {missing[:10]}")
    return [index[n] for n in want]
