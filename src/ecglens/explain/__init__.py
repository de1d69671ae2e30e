"""Explanations: one module per explainable checkpoint kind, each turning (model, record) into an ``Explanation``.

The module that explains a kind is named by its family declaration
(``CheckpointKind.explainer``); it defines ``explain(model, directory, ecg,
options) -> Explanation``, where ``model`` is the loaded checkpoint, and may
define ``add_arguments(group)`` for its own CLI options (a module that is
cheap to import: torch only inside functions). An explanation writes nothing
until ``save`` is called: its figures are drawn then.
"""
from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ECGError

EXPLANATION_FILE = "explanation.json"


@dataclass
class ExplainOptions:
    """Options every explainer understands; ``extra`` holds a family's own options.

    ``threshold`` None explains the statements called at the model's stored
    thresholds; a number overrides them for every statement.
    """

    top: int = 3
    threshold: float | None = None
    statements: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    """Why a model said what it said about one record.

    ``data`` is the JSON document (its ``figure`` entries name the files that
    ``save`` draws); ``figures`` maps each such file name to the function that
    draws it to a path; ``text`` is a short human-readable summary.
    """

    kind: str
    record: str
    data: dict[str, Any]
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, default=str)

    def save(self, directory, figures: bool = True, progress: bool = False) -> Path:
        """Write ``explanation.json`` (and, with ``figures``, every figure) into ``directory``; returns the JSON path.
        Every file is written under a temporary name and renamed when complete, the JSON last.

        The figures an earlier explanation saved there (listed in its JSON's ``files``) are removed
        first, so a reused directory never mixes two records' figures.
        """
        from ..atomic import write_text_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / EXPLANATION_FILE
        if path.is_file():
            try:
                earlier = json.loads(path.read_text()).get("files", [])
            except (OSError, ValueError, AttributeError):
                earlier = []
            for name in earlier:
                if isinstance(name, str) and Path(name).name == name:
                    (directory / name).unlink(missing_ok=True)
        self.data["files"] = sorted(self.figures) if figures else []
        if figures:
            from tqdm import tqdm

            for name, draw in tqdm(self.figures.items(), desc="figures", unit="fig", disable=not progress,
                                   total=len(self.figures)):
                # drawn under a temporary name that keeps the suffix (the plot format), renamed when complete
                tmp = directory / f".{Path(name).stem}.tmp-{os.getpid()}{Path(name).suffix}"
                try:
                    draw(tmp)
                    os.replace(tmp, directory / name)
                finally:
                    tmp.unlink(missing_ok=True)
        write_text_atomic(path, self.to_json() + "\n")
        return path

    def __str__(self) -> str:
        return self.text or self.to_json()


def choose_statements(clf, probs, options: ExplainOptions, source=None) -> tuple[list[str], str | None, Any]:
    """Statements to explain, most probable first, their note and the calibrated probabilities (k,).

    ``probs`` are the network's probabilities (the ones the logit decomposition explains); the
    statements the model calls (calibrated probability at or above its stored threshold, assessable
    statements only; or at or above ``options.threshold`` when given) are explained, plus those asked
    for. When none is called the most probable one is explained, and the note says so.
    """
    import numpy as np

    labels = list(clf.labels)
    unknown = [s for s in options.statements if s not in labels]
    if unknown:
        raise ECGError(source, f"unknown statement(s) {unknown}; the model knows {labels}")
    calibrated = clf.calibrate(np.asarray(probs, dtype=np.float64)[None])[0]
    called = (calibrated >= options.threshold if options.threshold is not None
              else (calibrated >= clf.thresholds) & clf.assessable)
    chosen = [s for s, c in zip(labels, called) if c or s in options.statements]
    note = None
    if not chosen:
        chosen = [labels[int(np.argmax(calibrated))]]
        note = "no statement reached its threshold; the most probable one is explained"
    chosen.sort(key=lambda s: -calibrated[labels.index(s)])
    return chosen, note, calibrated


def statement_call(clf, calibrated, j: int) -> dict[str, Any]:
    """The calibrated side of one explained statement: probability, threshold, whether it is called."""
    return {"calibrated_probability": float(calibrated[j]), "threshold": float(clf.thresholds[j]),
            "assessable": bool(clf.assessable[j]),
            "called": bool(clf.assessable[j] and calibrated[j] >= clf.thresholds[j])}


def explainer_for(kind: str) -> ModuleType:
    """The explainer module of a checkpoint kind (ECGError naming the explainable kinds when it has none)."""
    from ..models.registry import checkpoint_kinds

    kinds = checkpoint_kinds()
    if kind not in kinds or kinds[kind].explainer is None:
        explainable = sorted(k for k, v in kinds.items() if v.explainer)
        raise ECGError(None, f"no explainer for model kind {kind!r}; explainable: {', '.join(explainable)}")
    return importlib.import_module(kinds[kind].explainer)


def explainer_modules() -> list[ModuleType]:
    """Every explainer module named by a family (for their CLI options)."""
    from ..models.registry import checkpoint_kinds

    names = sorted({k.explainer for k in checkpoint_kinds().values() if k.explainer})
    return [importlib.import_module(n) for n in names]


def safe_name(name: str) -> str:
    """A statement or record name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def overlay_figure(beats, rate: float, values, label: str, title: str, r_index: int, cmap: str = "viridis",
                   segments=None) -> Callable[[Path], None]:
    """A figure drawer: beats overlaid per lead, coloured by ``values`` (time in s from the R peak)."""
    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt
        import numpy as np

        from ..io.leads import STANDARD_LEADS
        from ..viz import plot_overlay

        fig = plot_overlay(np.asarray(beats), rate, STANDARD_LEADS, values, cmap=cmap, colorbar_label=label,
                           path=path, title=title, segments=segments, start_s=-r_index / rate)
        plt.close(fig)

    return draw
