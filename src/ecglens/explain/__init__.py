"""Explanations: one module per model family, each turning (model, record) into JSON + figures.

``EXPLAINERS`` maps a checkpoint's ``config["kind"]`` to the module that explains it;
each such module defines ``explain(model_dir, ecg, out_dir, options) -> dict`` (the JSON
it also writes to ``out_dir``) and may define ``add_arguments(parser)`` for its own options.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..errors import ECGError

EXPLAINERS: dict[str, str] = {
    "factorecg": "ecglens.explain.factorecg",
    "protoecgnet": "ecglens.explain.protoecgnet",
    "qlst": "ecglens.explain.qlst",
}


@dataclass
class ExplainOptions:
    """Options every explainer understands; ``extra`` holds a family's own options."""

    top: int = 3
    threshold: float = 0.5
    statements: tuple[str, ...] = ()
    figures: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def choose_statements(labels: list[str], probs, options: ExplainOptions, source=None) -> tuple[list[str], str | None]:
    """Statements to explain, most probable first: those at or above the threshold plus those asked for.

    When none qualifies the most probable one is explained, and the returned note says so.
    """
    unknown = [s for s in options.statements if s not in labels]
    if unknown:
        raise ECGError(source, f"unknown statement(s) {unknown}; the model knows {list(labels)}")
    chosen = [s for s, p in zip(labels, probs) if p >= options.threshold or s in options.statements]
    note = None
    if not chosen:
        chosen = [labels[max(range(len(labels)), key=lambda i: probs[i])]]
        note = f"no statement reached {options.threshold:g}; the most probable one is explained"
    chosen.sort(key=lambda s: -probs[labels.index(s)])
    return chosen, note


def explainer_for(kind: str) -> ModuleType:
    """The explainer module for a model kind (ECGError when the kind has none)."""
    if kind not in EXPLAINERS:
        raise ECGError(None, f"no explainer for model kind {kind!r}; explainable: {', '.join(sorted(EXPLAINERS)) or 'none'}")
    return importlib.import_module(EXPLAINERS[kind])
