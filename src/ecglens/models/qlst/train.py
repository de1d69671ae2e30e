"""Train qLST (``ecglens train qlst``): the traversal network against a frozen VAE and classifier.

Queries are triples (latent mean z of a training record, statement, target
score q): z from the caller's latent means (the FactorECG VAE's posterior
means of training-fold median beats), the statement uniformly from the
configured ones, q from ``U(0, 1)`` mixed with the extremes (``far_fraction``).
Training queries are drawn afresh every epoch; the validation queries are a
fixed set on the validation records. The generic ``Trainer`` optimises the
network only (VAE and classifier frozen, in eval mode) and stops early on the
validation success rate (share of queries answered within ``tolerance``),
keeping the best epoch.

The checkpoint (kind ``qlst``) holds only the network weights; its config
names the VAE and classifier checkpoints it depends on, so ``load_qlst`` can
rebuild the whole explainer.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import ECGError
from ...training import (
    Stage,
    StageRunner,
    Validation,
    init_distributed,
    load_checkpoint,
    provenance,
    run_training,
    save_checkpoint,
    seed_everything,
)
from .adapters import RecordClassifierAdapter, RecordContext
from .config import VARIANTS, QLSTConfig
from .loading import load_classifier_adapter, load_vae_checkpoint, relative_references
from .losses import beat_rmse, proximity_reference, qlst_loss
from .network import QLST, TraversalNetwork
from .resynth import regular_peaks

log = logging.getLogger(__name__)

KIND = "qlst"


def sample_targets(n: int, far_fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """n target scores: ``U(0, 1)``, except a ``far_fraction`` share from ``U(0, 0.1)`` or ``U(0.9, 1)``."""
    u = torch.rand(n, generator=generator)
    far = torch.rand(n, generator=generator) < far_fraction
    end = torch.rand(n, generator=generator) < 0.5
    extreme = torch.where(end, 0.9 + 0.1 * u, 0.1 * u)
    return torch.where(far, extreme, u)


class QueryDataset(Dataset):
    """Queries over latent means ``z`` (n, d): dicts with ``z``, ``statement`` (index), ``q`` and, when
    given, the record's real ``beat`` (for ``proximity_reference="input"``) and ``r_peaks``.

    With ``seed`` the queries are a fixed table (validation); without, each item
    is drawn afresh from the global torch RNG (training: new queries every
    epoch, reproducible under the trainer's seeding). ``r_peaks`` (n, P), padded
    with -1, gives each record's R peaks for a record classifier; ``beats``
    (n, leads, T) the records' median beats in mV.
    """

    def __init__(self, z, n_statements: int, size: int, far_fraction: float, seed: int | None = None,
                 r_peaks: torch.Tensor | None = None, beats=None):
        self.z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
        if self.z.ndim != 2 or not len(self.z):
            raise ECGError(None, f"latent means must be a non-empty (n, latent_dim) array, got {tuple(self.z.shape)}")
        if not torch.isfinite(self.z).all():
            raise ECGError(None, "latent means hold non-finite values")
        self.k, self.size, self.far = int(n_statements), int(size), float(far_fraction)
        self.extra = {}
        if r_peaks is not None:
            self.extra["r_peaks"] = torch.as_tensor(r_peaks, dtype=torch.long)
        if beats is not None:
            self.extra["beat"] = torch.as_tensor(np.asarray(beats), dtype=torch.float32)
        for name, t in self.extra.items():
            if len(t) != len(self.z):
                raise ECGError(None, f"{len(t)} {name} rows for {len(self.z)} latent means")
        self.table = None
        if seed is not None:
            g = torch.Generator().manual_seed(int(seed))
            self.table = (torch.randint(len(self.z), (self.size,), generator=g),
                          torch.randint(self.k, (self.size,), generator=g),
                          sample_targets(self.size, self.far, g))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.table is not None:
            row, s, q = (t[i] for t in self.table)
        else:
            row = torch.randint(len(self.z), ()).item()
            s = torch.randint(self.k, ())
            q = sample_targets(1, self.far)[0]
        return {"z": self.z[row], "statement": s.long(), "q": q.float(),
                **{name: t[row] for name, t in self.extra.items()}}


def _context(qlst: QLST, batch) -> Any:
    if "r_peaks" not in batch:
        return None
    n = getattr(qlst.classifier, "n_samples", None)
    if n is None:
        raise ECGError(None, "R peaks were given but the classifier takes no record context")
    return RecordContext(batch["r_peaks"], n)


def query_terms(qlst: QLST, network, batch) -> dict[str, torch.Tensor]:
    """Per-query loss, achieved score and proximity for a batch of queries (``network`` may be DDP-wrapped)."""
    z, s, q = batch["z"], batch["statement"], batch["q"]
    context = _context(qlst, batch)
    pick = s.view(-1, 1)
    x0, s0, z1 = qlst.traverse(z, s, q, context, network=network)
    x1 = qlst.vae.decode(z1)
    p1 = qlst.scores(x1, context).gather(1, pick).squeeze(1)
    p0 = s0.gather(1, pick).squeeze(1)
    x, p_x = batch.get("beat"), None
    if x is not None and qlst.config.proximity_reference == "input":
        with torch.no_grad():
            p_x = qlst.scores(x, context).gather(1, pick).squeeze(1)
    x_ref, p_ref = proximity_reference(qlst.config, x0, p0, x, p_x)
    loss, logs = qlst_loss(p1, q, p_ref, x_ref, x1, z1, qlst.config)
    return {"loss": loss, "logs": logs, "score": p1, "target": q, "proximity_mv": beat_rmse(x0, x1)}


def train_qlst(vae, classifier, z_train, z_val, config: QLSTConfig, *, run_dir: str | os.PathLike | None = None,
               identity: dict | None = None, r_peaks_train=None, r_peaks_val=None, beats_train=None, beats_val=None,
               resume: bool = False, progress: bool = True) -> tuple[QLST, Any]:
    """Train a traversal network; returns the ``QLST`` (best validation epoch) and the ``TrainResult``
    (None when a resumed run had already finished; the network then comes from ``<run_dir>/model``).

    ``vae``: a frozen ``FactorVAE`` (anything with ``decode``); ``classifier``: a
    ``DifferentiableClassifier``; ``z_train``/``z_val``: latent means (n, d);
    ``beats_train``/``beats_val``: the records' real beats (n, leads, T), needed
    when ``config.proximity_reference == "input"``.
    One stage (``qlst``) in ``run_dir`` itself; ``identity`` (``{"vae": ...,
    "classifier": ..., "beat": ...}``) goes into the checkpoint written to
    ``<run_dir>/model`` (when ``run_dir`` is given).
    """
    dist = init_distributed()
    seed_everything(config.seed)
    network = TraversalNetwork(config)
    vae = vae.to(dist.device)
    if isinstance(classifier, torch.nn.Module):
        classifier = classifier.to(dist.device)
    qlst = QLST(network, vae, classifier, config)
    if config.proximity_reference == "input" and (beats_train is None or beats_val is None):
        raise ECGError(None, "proximity_reference 'input' needs the training and validation records' real beats")
    if config.proximity_reference != "input":
        beats_train = beats_val = None  # not needed: the reference is the decoded original
    train_data = QueryDataset(z_train, len(config.statements), config.queries_per_epoch, config.far_fraction,
                              r_peaks=r_peaks_train, beats=beats_train)
    val_data = QueryDataset(z_val, len(config.statements), config.val_queries, config.far_fraction,
                            seed=config.seed + 1, r_peaks=r_peaks_val, beats=beats_val)

    def loss_fn(net, batch):
        out = query_terms(qlst, net, batch)
        return out["loss"].mean(), out["logs"]

    def outputs(net, batch):
        out = query_terms(qlst, net, batch)
        return {"score": out["score"], "target": out["target"], "proximity_mv": out["proximity_mv"]}

    def metric(a):
        hit = np.abs(a["score"] - a["target"]) <= config.tolerance
        return {"val_success": float(hit.mean()), "val_proximity_uv": float(a["proximity_mv"].mean() * 1e3)}

    ckpt = {"kind": KIND, "qlst": config.to_dict(), "statements": list(config.statements), **(identity or {})}
    fitted = []

    def trains(run) -> torch.nn.Module:
        return network  # the network only: the VAE and the classifier stay frozen in QLST

    def fit(run) -> dict[str, Any]:
        result = run.fit(loss_fn, train_data,
                         run.train_config(batch_size=config.batch_size, weight_decay=config.weight_decay,
                                          grad_clip=10.0),
                         validation=Validation(val_data, outputs, metric, name="val_success", mode="max"),
                         checkpoint_config=ckpt)
        fitted.append(result)
        return {k: v for k, v in result.facts.items() if k != "stage"}

    def save(run) -> None:
        training = provenance(config.seed, n_train=len(train_data.z), n_val=len(val_data.z), **run.facts[KIND])
        save_checkpoint(run.dir / "model", network, {**relative_references(ckpt, run.dir / "model"),
                                                     "training": training})

    def restore(run) -> None:
        network.load_state_dict(load_checkpoint(run.dir / "model")[0])

    stage = Stage(KIND, fit, trains=trains, epochs=config.epochs, lr=config.lr, select="best",
                  patience=config.patience, save=save, restore=restore, directory="")
    StageRunner(run_dir, [stage], resume=resume, seed=config.seed, progress=progress).run()
    return qlst, (fitted[0] if fitted else None)


def _record_peaks(adapter, rr: np.ndarray):
    """Regular rhythms at each record's median RR (70 bpm where unknown) for a record classifier."""
    if not isinstance(adapter, RecordClassifierAdapter):
        return None
    rr = np.where(np.isfinite(rr) & (rr > 0.2), rr, 60.0 / 70.0)
    return regular_peaks(rr, adapter.n_samples, adapter.rate)


def learnable_statements(statements, labels) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(statements qLST learns, classifier outputs left out because one median beat cannot carry them).

    ``statements`` empty: every output of the classifier (``labels``) except those in
    ``statements.beyond_one_beat()``; named statements among those are refused with an ``ECGError``.
    """
    from ...statements import beyond_one_beat, describe

    beyond = beyond_one_beat()
    if statements:
        refused = [s for s in statements if s in beyond]
        if refused:
            raise ECGError(None, "qLST reshapes one median beat and cannot explain statements defined by the "
                                 "rhythm or the sequence of beats: " + ", ".join(
                                     f"{s} ({describe(s) or 'no description'})" for s in refused))
        return tuple(statements), ()
    return (tuple(s for s in labels if s not in beyond), tuple(s for s in labels if s in beyond))


def train_from_paths(vae_path, classifier_path, data_root, out_dir, statements=(), epochs: int | None = None,
                     seed: int = 0, resume: bool = False, cache_dir=None, max_records: int | None = None,
                     progress: bool = True, config_overrides: dict | None = None, variant: str = "ours") -> Path:
    """Train qLST on PTB-XL (training folds 1-8, validation fold 9); returns ``<out_dir>/model``.

    ``variant``: ``"ours"`` or ``"paper"`` (``config.VARIANTS``); ``config_overrides`` go on top.
    Statements one median beat cannot carry are left out (``learnable_statements``).
    """
    from ...datasets import PTBXL, TRAIN_FOLDS
    from ..factorecg.data import BeatSettings, load_beats

    learnable_statements(tuple(statements), ())  # refuse rhythm statements before reading any data
    _, _, beat = load_vae_checkpoint(vae_path)
    settings = BeatSettings.from_dict(beat)
    ds = PTBXL(data_root, sampling_rate=100)
    splits = {name: load_beats(ds, folds, settings, None, cache_dir, max_records, progress)
              for name, folds in (("train", TRAIN_FOLDS), ("val", (9,)))}
    for name, s in splits.items():
        if s.skipped:
            log.warning("%s: %d record(s) without a usable median beat, skipped (first: %s)", name, len(s.skipped),
                        "; ".join(f"{i}: {r}" for i, r in s.skipped[:3]))
    data = {"root": str(data_root), "identity": ds.identity(), "skipped": {n: len(s.skipped) for n, s in splits.items()}}
    return train_on_beats(vae_path, classifier_path, (splits["train"].beats, splits["train"].rr),
                          (splits["val"].beats, splits["val"].rr), out_dir, statements, epochs, seed, resume,
                          progress, config_overrides, variant, data)


def train_on_beats(vae_path, classifier_path, train, val, out_dir, statements=(), epochs: int | None = None,
                   seed: int = 0, resume: bool = False, progress: bool = True, config_overrides: dict | None = None,
                   variant: str = "ours", data: dict | None = None) -> Path:
    """Train qLST on given median beats: ``train``/``val`` are ``(beats (n, 12, T) in mV, median RR (n,) in s)``
    on the VAE's beat grid; ``data`` describes where they came from (stored). See ``train_from_paths``."""
    from ..factorecg.vae import encode_beats

    if variant not in VARIANTS:
        raise ECGError(None, f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    vae, vae_id, beat = load_vae_checkpoint(vae_path)
    adapter, clf = load_classifier_adapter(classifier_path, beat)
    statements, left_out = learnable_statements(tuple(statements), tuple(clf.labels))
    if left_out:
        log.info("left out (one median beat cannot carry them): %s", ", ".join(left_out))
    if not statements:
        raise ECGError(classifier_path, "the classifier has no statement a median beat can carry")
    z = {name: encode_beats(vae, beats)[0] for name, (beats, _) in (("train", train), ("val", val))}
    cfg = QLSTConfig(statements=statements, latent_dim=vae.config.latent_dim, epochs=int(epochs or QLSTConfig.epochs),
                     seed=seed, **{**VARIANTS[variant], **(config_overrides or {})})
    identity = {"vae": vae_id, "classifier": adapter.identity, "beat": beat, "variant": variant,
                "left_out": list(left_out), "data": data or {}}
    train_qlst(vae, adapter, z["train"], z["val"], cfg, run_dir=out_dir, identity=identity,
               r_peaks_train=_record_peaks(adapter, np.asarray(train[1])),
               r_peaks_val=_record_peaks(adapter, np.asarray(val[1])),
               beats_train=train[0], beats_val=val[0], resume=resume, progress=progress)
    return Path(out_dir) / "model"


def run(args: argparse.Namespace) -> int:
    """``ecglens train qlst`` (options: ``qlst.options``)."""
    return run_training(lambda: train_from_paths(args.vae, args.classifier, args.data, args.out, args.statement,
                                                 args.epochs, args.seed, args.resume, args.cache, args.max_records,
                                                 not args.no_progress, variant=args.variant))
