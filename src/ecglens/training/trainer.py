"""A generic trainer for any ``nn.Module``: one process or many under ``torchrun``.

The model family supplies a loss function ``loss_fn(model, batch) -> (loss, logs)``
and, optionally, a :class:`Validation` (per-batch outputs and a metric over the
whole validation set). The trainer owns everything else: data order, optimiser
and schedule, DDP, the per-epoch checkpoint in ``<run>/last/`` that makes a run
resumable to the bit, the best model in ``<run>/best/``, early stopping and the
``train_log.jsonl`` log. Multi-stage methods run one Trainer per stage, each with
its own run directory and ``stage`` name.
"""
from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from ..errors import ECGError
from . import distributed as D
from .checkpoint import STATE_FILE, load_checkpoint, load_extra, save_checkpoint
from .schedule import OPTIMIZERS, SCHEDULES, make_optimizer, make_scheduler

log = logging.getLogger("ecglens.training")

LOG_FILE = "train_log.jsonl"
LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, Any]]"]

# Fields that may change between a run and its resumption without changing the result.
_RESUME_FREE = frozenset({"progress", "num_workers", "eval_batch_size"})


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, stopping rule, data order and logging.

    ``batch_size`` is per process: under torchrun with N processes the global
    batch is N * batch_size. ``lr`` is the peak learning rate (one-cycle max).
    ``select='best'`` returns the weights of the best validation epoch (needs a
    validation); ``'final'`` returns the last epoch's. ``patience`` (epochs
    without improvement larger than ``min_delta``) enables early stopping.
    ``keep_start`` (with ``select='best'``) validates the starting weights as
    epoch 0, so a run that never beats them returns them unchanged (stages that
    fine-tune a trained model cannot make it worse).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "onecycle"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    grad_clip: float | None = None
    select: str = "final"
    patience: int | None = None
    min_delta: float = 0.0
    seed: int = 0
    num_workers: int = 0
    eval_batch_size: int | None = None
    drop_last: bool = False
    find_unused_parameters: bool = False
    progress: bool = True
    stage: str = "train"
    keep_start: bool = False

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.select not in ("best", "final"):
            raise ValueError(f"select must be 'best' or 'final', got {self.select!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")


@dataclass
class Validation:
    """Epoch-level validation: ``outputs(model, batch)`` -> per-sample arrays, ``metric`` over all of them.

    ``outputs`` returns a dict of tensors whose first axis is the batch (e.g.
    ``{"score": probs, "target": y}``); the trainer runs it on every process's
    share of ``data``, gathers the shares in dataset order and calls
    ``metric(dict of numpy arrays)`` once, on rank 0, then broadcasts the result.
    ``metric`` returns a float (logged as ``name``) or a dict that contains
    ``name``. ``mode`` says whether larger (``max``) or smaller is better.
    """

    data: Dataset
    outputs: Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
    metric: Callable[[dict[str, np.ndarray]], float | Mapping[str, float]]
    name: str = "val_metric"
    mode: str = "max"

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"Validation mode must be 'max' or 'min', got {self.mode!r}")


@dataclass
class TrainResult:
    """What a finished ``fit`` returns; ``model`` holds the selected weights."""

    model: nn.Module
    history: list[dict[str, Any]]
    epochs_run: int
    best_metric: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    run_dir: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and ``random`` (call before building a model for reproducible init)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy and ``random`` follow the worker's torch seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_length(batch: Any) -> int:
    """The number of samples in a batch: the first axis of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = batch_length(v)
        if n:
            return n
    return 0


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "loader": generator.get_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _as_float(v: Any) -> float:
    return float(v.detach().item()) if isinstance(v, torch.Tensor) else float(v)


class Trainer:
    """Train ``model`` with ``loss_fn`` on ``train_data`` (see the module docstring).

    ``param_groups(model)`` may return optimiser groups (each with its own
    ``lr``, the group's peak, and ``weight_decay``); by default all parameters
    that require gradients form one group. ``checkpoint_config`` is the
    ``config.json`` written with every checkpoint (``kind`` etc.); the trainer
    adds a ``training`` section with the stage, epoch and best metric. With
    ``run_dir=None`` nothing is written and ``resume`` is unavailable.
    ``epoch_end(model, epoch)`` runs after each training epoch, before validation and
    checkpointing, on every process (e.g. to re-project prototypes); it must
    change the model the same way everywhere.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_data: Dataset,
        config: TrainConfig | None = None,
        *,
        validation: Validation | None = None,
        run_dir: str | Path | None = None,
        param_groups: Callable[[nn.Module], Iterable[dict[str, Any]]] | None = None,
        checkpoint_config: Mapping[str, Any] | None = None,
        collate_fn: Callable | None = None,
        epoch_end: Callable[[nn.Module, int], None] | None = None,
    ):
        self.config = config or TrainConfig()
        if self.config.select == "best" and validation is None:
            raise ValueError("select='best' needs a validation")
        if self.config.patience is not None and validation is None:
            raise ValueError("early stopping (patience) needs a validation")
        if validation is not None and len(validation.data) == 0:
            raise ValueError("the validation set is empty")
        self.model = model
        self.loss_fn = loss_fn
        self.train_data = train_data
        self.validation = validation
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.param_groups = param_groups
        self.checkpoint_config = dict(checkpoint_config or {"kind": "custom"})
        self.collate_fn = collate_fn
        self.epoch_end = epoch_end

    # ------------------------------------------------------------------ setup
    def _loader(self, dist: D.DistInfo) -> tuple[DataLoader, DistributedSampler, torch.Generator]:
        cfg = self.config
        sampler = DistributedSampler(self.train_data, num_replicas=dist.world_size, rank=dist.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=cfg.drop_last)
        generator = torch.Generator().manual_seed(cfg.seed + dist.rank)
        # A last batch of one sample breaks batch norm in training mode: drop it (only then).
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        drop_last = cfg.drop_last or (has_bn and len(sampler) % cfg.batch_size == 1)
        loader = DataLoader(self.train_data, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                            collate_fn=self.collate_fn, generator=generator, worker_init_fn=seed_worker,
                            drop_last=drop_last, pin_memory=dist.device.type == "cuda")
        if len(loader) == 0:
            raise ECGError(None, f"stage {cfg.stage}: no training batches ({len(self.train_data)} samples, "
                                 f"batch {cfg.batch_size}, drop_last={cfg.drop_last})")
        return loader, sampler, generator

    def _groups(self, model: nn.Module) -> list[dict[str, Any]]:
        if self.param_groups is not None:
            groups = [dict(g) for g in self.param_groups(model)]
        else:
            groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        for g in groups:
            g["params"] = [p for p in g["params"] if p.requires_grad]
            g.setdefault("lr", self.config.lr)
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError(f"stage {self.config.stage}: the model has no trainable parameters")
        return groups

    def _ckpt_config(self, epoch: int, best_metric: float | None, best_epoch: int | None) -> dict[str, Any]:
        cfg = dict(self.checkpoint_config)
        cfg["training"] = {**cfg.get("training", {}), "stage": self.config.stage, "epoch": epoch,
                           "epochs": self.config.epochs, "best_metric": best_metric, "best_epoch": best_epoch,
                           "metric": None if self.validation is None else self.validation.name,
                           "trainer": asdict(self.config)}
        return cfg

    # ------------------------------------------------------------- validation
    def _validate(self, model: nn.Module, dist: D.DistInfo) -> dict[str, float]:
        v = self.validation
        n = len(v.data)
        share = Subset(v.data, range(dist.rank, n, dist.world_size))
        loader = DataLoader(share, batch_size=self.config.eval_batch_size or self.config.batch_size, shuffle=False,
                            num_workers=self.config.num_workers, collate_fn=self.collate_fn,
                            generator=torch.Generator().manual_seed(0), worker_init_fn=seed_worker)
        was_training = model.training
        model.eval()
        parts: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for batch in loader:
                for k, t in v.outputs(model, to_device(batch, dist.device)).items():
                    t = t.detach()
                    parts.setdefault(k, []).append((t.float() if t.is_floating_point() else t).cpu().numpy())
        model.train(was_training)
        local = {k: np.concatenate(p) for k, p in parts.items()}
        shares = D.all_gather_objects(local)
        result: dict[str, Any] | None = None
        error: Exception | None = None
        if dist.is_main:
            try:
                merged = {}
                for k, first in shares[0].items():
                    out = np.empty((n,) + first.shape[1:], dtype=first.dtype)
                    for r, share_r in enumerate(shares):
                        if len(out[r::dist.world_size]):
                            out[r::dist.world_size] = share_r[k]
                    merged[k] = out
                value = v.metric(merged)
                result = ({k: float(x) for k, x in value.items()} if isinstance(value, Mapping)
                          else {v.name: float(value)})
                if v.name not in result:
                    raise KeyError(f"validation metric returned {sorted(result)} without {v.name!r}")
            except Exception as exc:  # tell the other ranks instead of leaving them waiting
                error, result = exc, {"__error__": f"{type(exc).__name__}: {exc}"}
        result = D.broadcast_object(result)
        if "__error__" in result:
            raise RuntimeError(f"stage {self.config.stage}: validation failed: {result['__error__']}") from error
        return result

    def _improved(self, value: float, best: float | None) -> bool:
        if np.isnan(value):
            return False
        if best is None:
            return True
        if self.validation.mode == "max":
            return value > best + self.config.min_delta
        return value < best - self.config.min_delta

    # ----------------------------------------------------------------- resume
    def _read_resume_state(self) -> dict[str, Any] | None:
        last = self.run_dir / "last"
        if not (last / STATE_FILE).is_file():
            return None
        state = load_extra(last, STATE_FILE)
        if state.get("stage") != self.config.stage:
            raise ECGError(last, f"holds stage {state.get('stage')!r}, not {self.config.stage!r}")
        saved, now = state.get("trainer", {}), asdict(self.config)
        changed = sorted(k for k in now if k not in _RESUME_FREE and _plain(saved.get(k)) != _plain(now[k]))
        if changed:
            raise ECGError(last, "cannot resume with a different training configuration: "
                                 + ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in changed))
        return state

    def _truncate_log(self, epoch: int) -> None:
        path = self.run_dir / LOG_FILE
        if not path.is_file():
            return
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        keep = [r for r in records if not (r.get("stage") == self.config.stage and r.get("epoch", 0) > epoch)]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    # -------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the configured number of epochs (or an early stop); see the class docstring."""
        cfg = self.config
        dist = D.init_distributed()
        if resume and self.run_dir is None:
            raise ValueError("resume needs a run_dir")
        writes = self.run_dir is not None and dist.is_main

        torch.manual_seed(cfg.seed + dist.rank)
        np.random.seed((cfg.seed + dist.rank) % 2**32)
        random.seed(cfg.seed + dist.rank)

        model = self.model.to(dist.device)
        loader, sampler, generator = self._loader(dist)
        optimizer = make_optimizer(self._groups(model), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.betas)
        scheduler = make_scheduler(optimizer, cfg.schedule, cfg.epochs * len(loader), cfg.pct_start,
                                   cfg.div_factor, cfg.final_div_factor)

        start_epoch, history = 0, []
        best_metric = best_epoch = None
        best_state: dict[str, torch.Tensor] | None = None
        bad_epochs, finished, stopped_early = 0, False, False
        state = self._read_resume_state() if resume else None
        if resume and state is None:
            log.warning("%s: nothing to resume (no last/%s); starting afresh", self.run_dir, STATE_FILE)
        if state is None and self.run_dir is not None and (self.run_dir / "last" / STATE_FILE).is_file():
            raise ECGError(self.run_dir, "holds a previous run (last/); resume it or choose another directory")
        if state is not None:
            weights, _ = load_checkpoint(self.run_dir / "last", device=dist.device)
            model.load_state_dict(weights)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rngs = state["rng"]
            if len(rngs) == dist.world_size:
                _set_rng_state(rngs[dist.rank], generator)
            else:
                log.warning("resuming %d-process state with %d processes: random streams restart",
                            len(rngs), dist.world_size)
            start_epoch, history = state["epoch"], list(state["history"])
            best_metric, best_epoch, bad_epochs = state["best_metric"], state["best_epoch"], state["bad_epochs"]
            finished, stopped_early = state["finished"], state["stopped_early"]
            if best_epoch is not None:
                best_state, _ = load_checkpoint(self.run_dir / "best")
            if writes:
                self._truncate_log(start_epoch)
            log.info("%s: resuming stage %s after epoch %d", self.run_dir, cfg.stage, start_epoch)
        elif writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / LOG_FILE).write_text("")

        if dist.world_size > 1:
            ddp_model: nn.Module = nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.device] if dist.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        else:
            ddp_model = model

        if state is None and cfg.keep_start and cfg.select == "best" and self.validation is not None:
            record = {"stage": cfg.stage, "epoch": 0, **self._validate(model, dist), "best": True}
            best_metric, best_epoch, best_state = record[self.validation.name], 0, _cpu_copy(model)
            history.append(record)
            if writes:
                save_checkpoint(self.run_dir / "best", best_state, self._ckpt_config(0, best_metric, best_epoch))
                with open(self.run_dir / LOG_FILE, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            self._report(record)

        epoch = start_epoch
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if finished:
                break
            record = self._train_epoch(ddp_model, loader, sampler, optimizer, scheduler, epoch, dist)
            if self.epoch_end is not None:
                self.epoch_end(model, epoch)
            if self.validation is not None:
                record.update(self._validate(model, dist))
                value = record[self.validation.name]
                if self._improved(value, best_metric):
                    best_metric, best_epoch, bad_epochs = value, epoch, 0
                    best_state = _cpu_copy(model)
                    record["best"] = True
                    if writes:
                        save_checkpoint(self.run_dir / "best", best_state, self._ckpt_config(epoch, best_metric, best_epoch))
                else:
                    bad_epochs += 1
                    record["best"] = False
                stopped_early = cfg.patience is not None and bad_epochs >= cfg.patience and epoch < cfg.epochs
            finished = stopped_early or epoch == cfg.epochs
            history.append(record)
            rngs = D.all_gather_objects(_rng_state(generator))
            if writes:
                train_state = {"stage": cfg.stage, "epoch": epoch, "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "rng": rngs, "history": history,
                               "best_metric": best_metric, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                               "finished": finished, "stopped_early": stopped_early, "trainer": asdict(cfg)}
                save_checkpoint(self.run_dir / "last", model, self._ckpt_config(epoch, best_metric, best_epoch),
                                extra_files={STATE_FILE: train_state})
                with open(self.run_dir / LOG_FILE, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            self._report(record)
            if stopped_early:
                log.info("stage %s: early stop after epoch %d (best %s %.4f at epoch %d)", cfg.stage, epoch,
                         self.validation.name, best_metric, best_epoch)
        D.barrier()

        if cfg.select == "best" and best_state is not None:
            model.load_state_dict(best_state)
        epochs_run = history[-1]["epoch"] if history else 0
        facts = {"stage": cfg.stage, "epochs_run": epochs_run, "stopped_early": stopped_early,
                 "best_metric": best_metric, "best_epoch": best_epoch, "selected": cfg.select,
                 "metric": None if self.validation is None else self.validation.name, "world_size": dist.world_size}
        return TrainResult(model, history, epochs_run, best_metric, best_epoch, stopped_early, self.run_dir, facts)

    def _train_epoch(self, model, loader, sampler, optimizer, scheduler, epoch: int, dist: D.DistInfo) -> dict[str, Any]:
        cfg = self.config
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        count, lr = 0, float("nan")
        bar = tqdm(loader, desc=f"{cfg.stage} {epoch}/{cfg.epochs}", leave=False, file=sys.stderr,
                   disable=not (cfg.progress and dist.is_main), dynamic_ncols=True)
        t0 = time.perf_counter()
        for batch in bar:
            batch = to_device(batch, dist.device)
            loss, logs = self.loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"stage {cfg.stage}: loss is {loss.item()} in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            n = batch_length(batch)
            count += n
            sums["loss"] = sums.get("loss", 0.0) + loss.detach().item() * n
            for k, v in (logs or {}).items():
                sums[k] = sums.get(k, 0.0) + _as_float(v) * n
            bar.set_postfix(loss=f"{loss.item():.4f}")
        seconds = time.perf_counter() - t0
        keys = sorted(sums)
        totals = D.all_reduce_sum(torch.tensor([count] + [sums[k] for k in keys], dtype=torch.float64)).tolist()
        seconds = D.all_reduce_mean(seconds)
        record: dict[str, Any] = {"stage": cfg.stage, "epoch": epoch}
        for k, total in zip(keys, totals[1:]):
            record[f"train_{k}"] = total / max(totals[0], 1.0)
        record.update({"lr": lr, "records": int(totals[0]),
                       "records_per_s": totals[0] / max(seconds, 1e-9), "seconds": seconds})
        return record

    def _report(self, record: Mapping[str, Any]) -> None:
        if not D.is_main():
            return
        parts = [f"[{record['stage']}] epoch {record['epoch']}/{self.config.epochs}"]
        if "train_loss" in record:  # epoch 0 (keep_start) is validated only
            parts.append(f"loss {record['train_loss']:.4f}")
        if self.validation is not None:
            name = self.validation.name
            parts.append(f"{name} {record[name]:.4f}" + (" *" if record.get("best") else ""))
        if "records_per_s" in record:
            parts.append(f"{record['records_per_s']:.0f} rec/s")
        line = "  ".join(parts)
        log.info(line)
        if self.config.progress:
            tqdm.write(line, file=sys.stderr)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``train_log.jsonl``."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise ECGError(run_dir, f"no {LOG_FILE}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["LOG_FILE", "TrainConfig", "TrainResult", "Trainer", "Validation", "batch_length", "read_log",
           "seed_everything", "seed_worker", "to_device"]
