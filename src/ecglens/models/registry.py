"""The one registry of model families, read lazily (nothing here imports torch).

A family is one folder ``models/<family>/`` whose ``family.py`` declares a
:class:`ModelFamily`: the checkpoint kinds it writes and how to load each,
its training commands (options added by a torch-free function, the run
function named by reference), its recipe and config dataclasses, its stages
and the explainer of each kind. Loading, ``train``, ``explain``, ``demo`` and
the benchmark all read :data:`FAMILIES`; adding a family is one folder plus
one line there. References are ``"package.module:attribute"`` strings,
imported only when used (:func:`resolve`), so the CLI can list families and
build their options without importing a model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError

FAMILIES: tuple[str, ...] = (
    "ecglens.models.baseline.family",
    "ecglens.models.protoecgnet.family",
    "ecglens.models.factorecg.family",
    "ecglens.models.qlst.family",
)


@dataclass(frozen=True)
class CheckpointKind:
    """One kind of checkpoint (``config["kind"]``) a family writes.

    ``load`` references ``(state, config, path, device) -> object``: a
    ``Classifier`` when ``predicts``, otherwise an object that only explains
    (qLST); ``explainer`` names the module under ``ecglens.explain`` that
    explains it (resolved by the explain layer, not here); ``instead`` says
    what to use for prediction when the kind cannot predict.
    """

    name: str
    load: str
    predicts: bool = True
    explainer: str | None = None
    instead: str = ""


@dataclass(frozen=True)
class TrainCommand:
    """``ecglens train <name>``: ``add_arguments`` references a torch-free ``parser -> None`` (the CLI
    builds the options without importing the model), ``run`` references ``args -> exit code``;
    ``function`` references the Python training function (``data_root, label_set=..., out_dir=..., seed=...,
    cache_dir=..., progress=..., resume=...`` -> the final model's directory) the benchmark calls;
    ``calibrate``: whether the trained model gets a calibration fitted on the validation fold."""

    name: str
    help: str
    add_arguments: str
    run: str
    function: str
    calibrate: bool = True


@dataclass(frozen=True)
class ModelFamily:
    """Everything ecglens needs to know about one model family (see the module docstring)."""

    name: str
    description: str
    kinds: tuple[CheckpointKind, ...]
    train: tuple[TrainCommand, ...] = ()
    recipes: str | None = None
    configs: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    citation: str = ""


def resolve(reference: str):
    """The object a ``"module:attribute"`` reference names (imported now)."""
    module, _, attribute = reference.partition(":")
    obj = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=None)
def families() -> tuple[ModelFamily, ...]:
    """Every registered family, in registry order."""
    return tuple(importlib.import_module(m).FAMILY for m in FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family called ``name`` (``ConfigError`` listing the known ones otherwise)."""
    for fam in families():
        if fam.name == name:
            return fam
    raise ConfigError(None, f"unknown model family {name!r}; known: {', '.join(f.name for f in families())}")


def checkpoint_kinds() -> dict[str, CheckpointKind]:
    """Every loadable checkpoint kind of every family."""
    return {k.name: k for fam in families() for k in fam.kinds}


def get_kind(kind: str | None, path=None) -> CheckpointKind:
    """The declaration of a checkpoint kind (``ConfigError`` naming ``path`` when no family loads it)."""
    kinds = checkpoint_kinds()
    if kind not in kinds:
        raise ConfigError(path, f"no model family loads checkpoint kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return kinds[kind]


def train_commands() -> dict[str, TrainCommand]:
    """Every ``ecglens train`` subcommand of every family."""
    return {c.name: c for fam in families() for c in fam.train}
