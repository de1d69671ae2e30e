"""The public Python API: ``load_model`` -> ``Model`` with ``predict`` and ``explain``; ``list_models``.

    >>> import ecglens
    >>> "baseline" in ecglens.list_models()
    True
    >>> model = ecglens.load_model("baseline")
    >>> ecg = ecglens.read_ecg(ecglens.sample_path(172))
    >>> prediction = model.predict(ecg)
    >>> prediction.probabilities.shape == (1, len(model.labels))
    True
    >>> bool(((prediction.probabilities >= 0) & (prediction.probabilities <= 1)).all())
    True
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ECGError
from .explain import Explanation, ExplainOptions, explainer_for
from .io.record import ECG
from .models.loading import load_any
from .models.prediction import Prediction
from .models.registry import CheckpointKind


class Model:
    """A loaded checkpoint of any family: ``predict`` (classifiers) and ``explain`` (explainable kinds).

    ``name`` is how it was asked for, ``directory`` its checkpoint, ``kind`` its
    checkpoint kind's declaration, ``loaded`` the family's own object (a
    ``Classifier``, or a ``QLST``) and ``config`` its full configuration.
    """

    def __init__(self, loaded: Any, kind: CheckpointKind, directory: Path, name: str = ""):
        self.loaded, self.kind, self.directory = loaded, kind, Path(directory)
        self.name = name or self.directory.name
        config = getattr(loaded, "config", None)
        self.config: dict[str, Any] = config if isinstance(config, dict) else getattr(loaded, "checkpoint", {})

    @property
    def can_predict(self) -> bool:
        return self.kind.predicts

    @property
    def can_explain(self) -> bool:
        return self.kind.explainer is not None

    @property
    def labels(self) -> list[str]:
        """The statements the model scores (a qLST: the statements it answers queries for)."""
        return list(self.loaded.labels) if self.can_predict else list(self.loaded.config.statements)

    def predict(self, ecgs: ECG | Sequence[ECG], on_error: str = "raise", quality: bool = True) -> Prediction:
        """Probabilities and calls at the stored thresholds for one record or a list.

        Every record's quality is assessed first (``ecglens.quality.assess_ecg``; ``quality=False``
        skips it): a flagged record keeps its probabilities but gets no call. A record the model
        cannot read at all (e.g. no usable beat) raises its ``ECGError``; with ``on_error="skip"`` it
        is listed in ``Prediction.skipped`` instead (its row NaN, no call).
        """
        if not self.can_predict:
            raise ECGError(self.directory, f"a {self.kind.name} model cannot predict: {self.kind.instead}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        import numpy as np

        from .scoring import preprocess_each

        records = [ecgs] if isinstance(ecgs, ECG) else list(ecgs)
        clf = self.loaded
        failed, reports = {}, []
        for i, ecg in enumerate(records):
            try:
                reports.append(_quality(ecg) if quality else None)
            except ECGError as exc:
                failed[i] = exc
                reports.append(None)
        judged = [i for i in range(len(records)) if i not in failed]
        rows, inputs = [], []
        for i, x in zip(judged, preprocess_each(clf, [records[i] for i in judged])):
            if isinstance(x, ECGError):
                failed[i] = x
            else:
                rows.append(i)
                inputs.append(x)
        if failed and on_error == "raise":
            raise failed[min(failed)]
        skipped = [(i, failed[i].problem) for i in sorted(failed)]
        probs = np.full((len(records), len(clf.labels)), np.nan)
        if inputs:
            probs[rows] = clf.predict_inputs(inputs)
        return Prediction([str(e.source or f"record {i}") for i, e in enumerate(records)], list(clf.labels), probs,
                          clf.thresholds, model=self.name, skipped=skipped, assessable=clf.assessable,
                          quality=reports if quality else None)

    def explain(self, ecg: ECG, statements: Sequence[str] = (), top: int = 3, threshold: float | None = None,
                limit: int | None = 4, all_figures: bool = False, **options: Any) -> Explanation:
        """Why the model said what it said about one record; writes nothing (``Explanation.save`` does).

        By default the statements called at the stored thresholds are explained; ``statements``
        adds others, up to ``limit`` statements in all; figures are drawn for the called and asked-for
        statements unless ``all_figures``; ``options`` are the family's own (e.g. qLST's ``qlst_target``).
        """
        if not self.can_explain:
            raise ECGError(self.directory, f"a {self.kind.name} model has no explainer; explainable families: "
                                           "protoecgnet, factorecg, qlst")
        opts = ExplainOptions(top=top, threshold=threshold, statements=tuple(statements), extra=dict(options),
                              limit=limit, all_figures=all_figures)
        explanation = explainer_for(self.kind.name).explain(self.loaded, self.directory, ecg, opts)
        report = _quality(ecg)
        explanation.data["quality"] = report
        if not report["judgeable"]:
            warning = (f"record not judgeable ({', '.join(report['flags'])}): the model's output on it should not "
                       "be taken at its word")
            explanation.data["warning"] = warning
            explanation.text = f"WARNING: {warning}\n{explanation.text}"
        return explanation

    def __repr__(self) -> str:
        return f"Model({self.name!r}, kind={self.kind.name!r}, labels={len(self.labels)})"


def _quality(ecg: ECG) -> dict:
    """The record's quality report, judged on its 12 standard leads where it has (or can derive) them, so
    that the checks needing them (out-of-distribution, arm swap) run on records with extra leads too."""
    from .quality import assess_ecg

    try:
        ecg = ecg.standard12()
    except ECGError:
        pass  # fewer leads: the checks that need all twelve are listed as skipped
    return assess_ecg(ecg).to_dict()


def load_model(name_or_path: str | os.PathLike, device: Any = None, runtime: str = "torch") -> Model:
    """A shipped model by name (``list_models()``), a checkpoint directory or a training run directory.

    ``runtime="onnx"`` runs a classifier's network through onnxruntime (``ecglens[onnx]``); everything
    around it (preprocessing, windows, beats, calibration) stays the same.
    """
    if runtime not in ("torch", "onnx"):
        raise ValueError(f"runtime must be 'torch' or 'onnx', got {runtime!r}")
    loaded, kind, directory = load_any(name_or_path, device=device)
    if runtime == "onnx":
        from .models.onnx_runtime import use_onnx

        use_onnx(loaded, source=str(name_or_path))
    return Model(loaded, kind, directory, name=str(name_or_path))


def calibrate(model: Model | str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
              fold: int = 9, method: str = "platt", threshold_rule: str = "f1", rate: int = 100,
              cache_dir: str | os.PathLike | None = None, batch_size: int = 256, progress: bool = False) -> Model:
    """Fit the model's calibration, thresholds and assessable statements on PTB-XL fold ``fold`` (the
    validation fold; never the test fold) and write the calibrated checkpoint to ``out`` (a copy of the
    model's directory with ``config["calibration"]``; ``out`` may be the model's own directory, which is
    then replaced as a whole once the copy is complete); returns it loaded. See ``ecglens.calibration``.
    """
    import json
    import shutil

    import numpy as np

    from .atomic import atomic_dir
    from .calibration import fit_calibration
    from .datasets import PTBXL, TRAIN_FOLDS
    from .scoring import fold_scores, label_columns

    model = model if isinstance(model, Model) else load_model(model)
    if not model.can_predict:
        raise ECGError(model.directory, f"a {model.kind.name} model has no probabilities to calibrate")
    clf = model.loaded
    label_set = clf.config.get("label_set")
    if fold in TRAIN_FOLDS:
        raise ECGError(None, f"fold {fold} is a training fold; calibrate on the validation fold")
    ds = PTBXL(data, sampling_rate=rate)
    split = ds.load(label_set, folds=(fold,), pipeline=clf.pipeline, cache_dir=cache_dir, progress=progress)
    with clf.raw():
        probs, _ = fold_scores(clf, split, batch_size)
    train = ds.labels(label_set, TRAIN_FOLDS)
    train_positives = train.y[:, label_columns(train.names, clf.labels, "training labels")].sum(0)
    y_val = np.asarray(split.y)[:, label_columns(split.label_names, clf.labels, f"fold {fold} labels")]
    calibration = fit_calibration(clf.labels, y_val, probs, train_positives, method, threshold_rule)
    calibration.facts.update(fold=fold, data=str(data), label_set=label_set)
    out = Path(out)
    config = {**model.config, "calibration": calibration.to_dict()}
    config.pop("path", None)
    with atomic_dir(out) as tmp:
        for f in model.directory.iterdir():
            if f.is_file() and f.name != "config.json":
                shutil.copy2(f, tmp / f.name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return load_model(out)


def list_models() -> list[str]:
    """Names of the models shipped inside the package (each loads offline with ``load_model``)."""
    from .pretrained import list_pretrained

    return list_pretrained()
