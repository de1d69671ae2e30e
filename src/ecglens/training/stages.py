"""Declared training stages and the one runner every model family trains through.

A :class:`Stage` declares one step of a recipe: its name (and so its directory
``<out>/<name>/``), what trains in it, its Trainer settings (epochs, peak
learning rate, selection rule, patience), the body that runs it and what it
leaves behind. ``trains`` is the one place that decides which parameters
train: the runner first freezes every parameter of the model it was given,
then ``trains`` sets ``requires_grad`` on what the stage optimises and returns
that module (``StageRun.module``), which the body hands to the Trainer.

:class:`StageRunner` runs the stages in order and has one resume rule: a stage
is finished when its marker ``<out>/<name>/stage.json`` exists. The marker is
written last and holds the stage's facts (what the body returned, plus its
``wall_s`` and the process's ``peak_rss_mib`` so far); a resumed run skips a
finished stage, reads its facts back and calls its ``restore``.

:func:`provenance` is the block every checkpoint's ``training`` section starts
with, and :func:`run_training` the body of every ``ecglens train`` command.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..atomic import write_json_atomic
from ..errors import ECGError
from . import distributed as D
from .resources import peak_rss_mib
from .trainer import TrainConfig, Trainer, TrainResult

log = logging.getLogger("ecglens.training")

STAGE_FILE = "stage.json"
SELECT = ("best", "final")


@dataclass(frozen=True)
class Stage:
    """One declared stage (see the module docstring).

    ``run(stage_run) -> facts`` does the work. ``trains(stage_run) -> module``
    declares what trains (None: the stage trains nothing); a stage that trains
    declares its ``epochs`` and ``lr`` too. ``save(stage_run)`` writes the
    stage's outputs once its facts are complete (rank 0, before the marker);
    ``restore(stage_run)`` brings them back when a resumed run skips the stage.
    ``directory`` is the stage's place under the run (default its name; ``""``
    for the run directory itself, which only a family's single stage may use).
    ``main_only`` stages run on rank 0 alone and must come last: the other
    ranks stop before the first of them.
    """

    name: str
    run: Callable[[StageRun], Mapping[str, Any]]
    trains: Callable[[StageRun], nn.Module] | None = None
    epochs: int | None = None
    lr: float | None = None
    select: str = "final"
    patience: int | None = None
    keep_start: bool = False
    save: Callable[[StageRun], None] | None = None
    restore: Callable[[StageRun], None] | None = None
    directory: str | None = None
    main_only: bool = False

    def __post_init__(self):
        if self.select not in SELECT:
            raise ValueError(f"stage {self.name}: select must be one of {SELECT}, got {self.select!r}")
        if self.trains is not None and (self.epochs is None or self.lr is None):
            raise ValueError(f"stage {self.name}: a stage that trains declares its epochs and learning rate")


@dataclass
class StageRun:
    """A stage as it runs: its declaration, directory (None when nothing is written), the facts of the
    stages before it (by name; the runner adds this stage's own once it has run) and what trains."""

    stage: Stage
    dir: Path | None
    facts: dict[str, dict[str, Any]]
    resume: bool
    seed: int
    progress: bool
    module: nn.Module | None = None

    @property
    def name(self) -> str:
        return self.stage.name

    def train_config(self, base: TrainConfig | None = None, **settings: Any) -> TrainConfig:
        """The Trainer settings the stage declares (epochs, lr, selection, patience, keep_start) with the
        run's seed and progress, over ``base`` (a recipe's own settings); ``settings`` adds the rest
        (batch size, optimiser, ...)."""
        s = self.stage
        declared = {"epochs": s.epochs, "lr": s.lr, "select": s.select, "patience": s.patience,
                    "keep_start": s.keep_start, "seed": self.seed, "progress": self.progress, "stage": s.name}
        return TrainConfig(**{**(asdict(base) if base is not None else {}), **declared, **settings})

    def fit(self, loss_fn, train_data, config: TrainConfig | None = None, *, module: nn.Module | None = None,
            run_dir: Path | None = None, **trainer_args: Any) -> TrainResult:
        """One Trainer run of ``module`` (default: the declared one) in ``run_dir`` (default: the stage's
        directory), resumed when the run is."""
        trainer = Trainer(self.module if module is None else module, loss_fn, train_data,
                          config or self.train_config(), run_dir=self.dir if run_dir is None else run_dir,
                          **trainer_args)
        return trainer.fit(resume=self.resume and (run_dir or self.dir) is not None)


class StageRunner:
    """Run ``stages`` in order under ``out`` (see the module docstring); ``run()`` returns every stage's facts.

    ``model``: the module whose parameters the stages' ``trains`` declarations
    partition (frozen before each declaration). ``out=None`` writes nothing
    and cannot resume.
    """

    def __init__(self, out: str | Path | None, stages: Sequence[Stage], *, model: nn.Module | None = None,
                 resume: bool = False, seed: int = 0, progress: bool = True):
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        if any(s.directory == "" for s in stages) and len(stages) > 1:
            raise ValueError("only a single stage may use the run directory itself")
        first_main = next((i for i, s in enumerate(stages) if s.main_only), len(stages))
        if not all(s.main_only for s in stages[first_main:]):
            raise ValueError("main_only stages must come last")
        if resume and out is None:
            raise ValueError("resume needs an output directory")
        self.out = None if out is None else Path(out)
        self.stages, self.model = list(stages), model
        self.resume, self.seed, self.progress = resume, int(seed), progress

    def stage_dir(self, stage: Stage) -> Path | None:
        if self.out is None:
            return None
        return self.out / (stage.name if stage.directory is None else stage.directory)

    def run(self) -> dict[str, dict[str, Any]]:
        main = D.init_distributed().is_main
        # Decided once, on rank 0, before any rank writes: which stages are finished (or why the run may not start).
        finished = D.broadcast_object(self._finished() if main else None)
        if isinstance(finished, tuple):
            raise ECGError(*finished)
        facts: dict[str, dict[str, Any]] = {}
        for stage in self.stages:
            if stage.main_only and not main:
                break
            run = StageRun(stage, self.stage_dir(stage), facts, self.resume, self.seed, self.progress and main)
            if finished[stage.name]:
                facts[stage.name] = json.loads((run.dir / STAGE_FILE).read_text())
                if stage.restore is not None:
                    stage.restore(run)
                if main:
                    log.info("stage %s: finished earlier, skipped", stage.name)
                continue
            self._run_stage(run, main)
        return facts

    def _finished(self) -> dict[str, bool] | tuple[Path, str]:
        """Each stage: finished (resuming, its marker exists)? Or (directory, problem) for a run that holds
        a previous one but was not asked to resume it."""
        finished = {}
        for stage in self.stages:
            directory = self.stage_dir(stage)
            if directory is None:
                finished[stage.name] = False
            elif self.resume:
                finished[stage.name] = (directory / STAGE_FILE).is_file()
            elif directory.is_dir() and any(directory.iterdir()):
                return directory, "holds a previous run; resume it (--resume) or choose another directory"
            else:
                finished[stage.name] = False
        return finished

    def _run_stage(self, run: StageRun, main: bool) -> None:
        stage = run.stage
        if stage.trains is not None:
            if self.model is not None:
                for p in self.model.parameters():
                    p.requires_grad_(False)
            run.module = stage.trains(run)
        if main:
            log.info("stage %s: starting", stage.name)
            if run.dir is not None:
                run.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        facts = dict(stage.run(run))
        facts["wall_s"] = time.perf_counter() - t0
        facts["peak_rss_mib"] = peak_rss_mib()  # the process's peak up to the end of this stage
        run.facts[stage.name] = facts
        if main:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in facts.items()
                               if k.startswith("val_") and isinstance(v, float))
            log.info("stage %s: done in %.1f s%s", stage.name, facts["wall_s"], f" ({scores})" if scores else "")
            if run.dir is not None:
                if stage.save is not None:
                    stage.save(run)
                write_json_atomic(run.dir / STAGE_FILE, facts, indent=2)
        if not stage.main_only:
            D.barrier()


def skipped_facts(records: Iterable[tuple[int, str]]) -> dict[str, Any]:
    """Records a split left out (id, reason), as checkpoints list them: their count and the list."""
    rows = [[int(i), str(r)] for i, r in records]
    return {"count": len(rows), "records": rows}


def provenance(seed: int, data: Mapping[str, Any] | None = None, labels: Sequence[str] | None = None,
               y: np.ndarray | None = None, **facts: Any) -> dict[str, Any]:
    """The block every checkpoint's ``training`` section starts with: the data it saw (``data``: the
    dataset's identity; ``facts``: folds, split sizes, ...; with ``labels`` and the training labels
    ``y``, each label's prevalence), the seed, the number of processes, the ecglens and torch versions
    and the UTC time."""
    block: dict[str, Any] = {"data": None if data is None else dict(data), **facts, "seed": int(seed)}
    if labels is not None and y is not None:
        prevalence = np.asarray(y, dtype=np.float64).mean(axis=0) if len(y) else np.zeros(len(labels))
        block["label_prevalence"] = dict(zip(labels, (float(p) for p in prevalence)))
    block.update({"world_size": D.get_world_size(), "ecglens_version": __version__,
                  "torch_version": torch.__version__,
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return block


def run_training(train: Callable[[], Path]) -> int:
    """The body of every ``ecglens train`` command: log to stderr, join the process group torchrun
    describes, train, leave the group (also on an error), and print the model's path on rank 0."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main = D.init_distributed().is_main
    try:
        path = train()
    finally:
        D.cleanup()
    if main:
        print(path)
    return 0


__all__ = ["STAGE_FILE", "Stage", "StageRun", "StageRunner", "provenance", "run_training", "skipped_facts"]
