"""Train FactorECG on PTB-XL in resumable stages (``ecglens train factorecg`` / ``beat-blackbox``).

Every record's median beat is loaded first (cached, ``data.load_beats``); then the
stages run through the shared ``StageRunner``, each in ``<out>/<stage>/`` and
skipped on resume once its ``stage.json`` exists:

1. ``vae`` -> ``<out>/vae/model``: the beta-VAE on training-fold median beats
   (folds 1-8), the KL weight ramped up over ``kl_warmup_epochs``; early
   stopping on the validation fold's negative beta-ELBO (the training
   objective at full beta), best epoch kept. Runs under torchrun via Trainer.
   With ``individual_beats`` k > 0 the training set adds k individual beats
   (kept beats, levelled like the median) of every training record to the
   median beats (augmentation: more shapes of the same morphology); with
   ``individual_target="median"`` each individual beat is encoded and its
   record's median beat is the reconstruction target (denoising: the noise of
   one beat is not asked of the decoder). Validation stays on median beats,
   which is what the model sees at inference.
   With ``vae_from`` a trained VAE is copied in instead.
2. ``factors`` -> ``<out>/factors/factors.json``: the active-factor rule on the
   training posteriors, the standardiser, population statistics (quantiles of
   each standardised factor, the NORM records' mean), reconstruction error on
   the training and validation folds (test-fold figures belong in the benchmark,
   ``bench/factorecg_recon.py``), and a data-driven description of each factor
   (Spearman correlation with ``ecg_measure`` properties of training beats).
3. ``factor_models`` -> ``<out>/model``: one model per statement of the label
   set (``factor_kind``: logistic regression or gradient-boosted trees) on the
   standardised factors and, with ``factor_rhythm``, the records' rhythm
   features (``beats.rhythm``); the final checkpoint (kind ``factorecg``): VAE
   weights in ``model.safetensors``, factor-model arrays in
   ``factor_models.safetensors``, the rest in config.json. Loading it needs no
   training data.

Stages 2-3 are cheap and run on rank 0 only.

``train_beat_blackbox`` trains the comparison network (``BeatClassifier``, the
VAE's encoder with a statement head, BCE, early stopping on validation macro
AUROC) on the same beats, one stage in the run directory; its checkpoint has
kind ``beat-blackbox``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ...atomic import write_bytes_atomic, write_json_atomic
from ...beats.rhythm import RHYTHM_FEATURES
from ...beats import ecg_measure
from ...configs import config_from_dict, config_to_dict
from ...datasets import LABEL_SETS, PTBXL, TRAIN_FOLDS, jaccard_cooccurrence
from ...errors import ConfigError, ECGError
from ...io.leads import STANDARD_LEADS
from ...metrics import macro_auroc
from ...preprocess import Pipeline, Resample
from ...training import (
    Stage,
    StageRun,
    StageRunner,
    Validation,
    barrier,
    init_distributed,
    load_checkpoint,
    load_config,
    provenance,
    run_training,
    save_checkpoint,
    seed_everything,
    skipped_facts,
)
from ..loading import config_section, fit_weights
from .blackbox import BeatClassifier, BeatClassifierConfig
from .config import FactorVAEConfig
from .data import BeatSettings, BeatSplit, load_beats, load_individual_beats, load_rhythm
from .factors import FactorModelConfig, FactorModels, FactorStandardizer, RhythmScaler, active_factors
from .losses import kl_elementwise, kl_warmup
from .traverse import associate_factors, describe_factor
from .vae import FactorVAE, decode_latents, ecg_lead_scale, encode_beats

log = logging.getLogger(__name__)

TEST_FOLD = 10
N_QUANTILES = 101
PROPERTY_LEADS = STANDARD_LEADS
FACTORS_FILE = "factors.json"
BLACKBOX_STAGE = "blackbox"
INDIVIDUAL_TARGETS = ("self", "median")


@dataclass(frozen=True)
class FactorTrainConfig:
    """Training settings of the FactorECG stages (the VAE architecture is ``FactorVAEConfig``).

    ``individual_beats``: individual beats per training record added to the
    VAE's training set (augmentation; module docstring, stage 1); 0: medians only.
    ``individual_target``: what the decoder reconstructs from an individual beat:
    ``"self"`` (the beat) or ``"median"`` (its record's median beat).

    ``active_rule``/``active_threshold``: a latent dimension is a factor when its
    mean KL to the prior over the training beats exceeds the threshold (nats).
    A collapsed dimension sits at ~0 nats. On the local PTB-XL subset (2,767 training
    beats, beta=4, 35 epochs) no dimension collapsed: the 32 ranged from 0.9 to
    2.8 nats, so all are kept (FactorECG kept 21 of 32 with far more data). The
    rule, threshold and both per-dimension statistics are stored with the model.

    ``factor_kind`` (``"logistic"`` or ``"gbt"``) and ``factor_C`` set the
    factor models (``FactorModelConfig``); ``factor_rhythm`` adds the records'
    rhythm features beside the factors. Defaults: chosen on fold 9 by
    ``bench/factor_models.py``.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int | None = 10
    individual_beats: int = 0
    individual_target: str = "self"
    active_rule: str = "kl"
    active_threshold: float = 0.1
    factor_C: float = 0.3
    factor_kind: str = "logistic"
    factor_rhythm: bool = True
    property_records: int = 2000
    blackbox_epochs: int = 60
    blackbox_patience: int | None = 10
    blackbox_lr: float = 1e-3

    def __post_init__(self):
        src = "<FactorTrainConfig>"
        if min(self.epochs, self.blackbox_epochs, self.batch_size, self.property_records) < 1:
            raise ConfigError(src, "epochs, blackbox_epochs, batch_size and property_records must be at least 1")
        if self.individual_beats < 0:
            raise ConfigError(src, f"individual_beats must be >= 0, got {self.individual_beats}")
        if self.individual_target not in INDIVIDUAL_TARGETS:
            raise ConfigError(src, f"individual_target must be one of {INDIVIDUAL_TARGETS}, got {self.individual_target!r}")
        if min(self.lr, self.blackbox_lr, self.factor_C) <= 0 or self.weight_decay < 0:
            raise ConfigError(src, "learning rates and factor_C must be positive, weight_decay not negative")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FactorTrainConfig:
        return config_from_dict(cls, d)


class BeatDataset(Dataset):
    """``(beat,)`` or ``(beat, y)`` items from in-memory (n, 12, m) beats (``y``: labels, or the VAE's target beats)."""

    def __init__(self, beats: np.ndarray, y: np.ndarray | None = None):
        self.beats = torch.from_numpy(np.ascontiguousarray(beats, dtype=np.float32))
        self.y = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.beats)

    def __getitem__(self, i: int):
        return (self.beats[i],) if self.y is None else (self.beats[i], self.y[i])


class VAEObjective(nn.Module):
    """The VAE plus a step counter, so the KL warm-up follows training steps (and resumes with them)."""

    def __init__(self, vae: FactorVAE, steps_per_epoch: int):
        super().__init__()
        self.vae = vae
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def beta(self) -> float:
        cfg = self.vae.config
        return cfg.beta * kl_warmup(float(self.step.item()) / self.steps_per_epoch, cfg.kl_warmup_epochs)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None):
        beta = self.beta()
        if self.training:
            self.step += 1
        return self.vae.loss(x, beta, target)


def beat_errors(beats: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Error of (n, leads, m) mV beats against a reference, in uV: MAE, RMSE, and their medians per record."""
    if not len(beats):
        return {"n": 0}
    diff = (np.asarray(beats, np.float64) - np.asarray(reference, np.float64)) * 1e3
    per_mae = np.abs(diff).mean(axis=(1, 2))
    per_rmse = np.sqrt((diff ** 2).mean(axis=(1, 2)))
    return {"n": int(len(beats)), "mae_uv": float(np.abs(diff).mean()), "rmse_uv": float(np.sqrt((diff ** 2).mean())),
            "mae_uv_median_record": float(np.median(per_mae)), "rmse_uv_median_record": float(np.median(per_rmse))}


def vae_errors(vae: FactorVAE, beats: np.ndarray) -> dict[str, float]:
    """Reconstruction error (posterior mean decoded) over all 12 leads (``beat_errors``)."""
    if not len(beats):
        return {"n": 0}
    return beat_errors(decode_latents(vae, encode_beats(vae, beats)[0]), beats)


def _split_facts(split: BeatSplit) -> dict:
    return {"n": int(len(split.ecg_ids)), "skipped": skipped_facts(split.skipped),
            "dropped_no_label": len(split.dropped)}


def _load_vae(directory: Path) -> FactorVAE:
    state, config = load_checkpoint(directory)
    return fit_weights(FactorVAE(config_section(config, "vae", FactorVAEConfig, directory)), state, directory,
                       "VAE").eval()


def _load_splits(data_root, label_set, settings, cache_dir, max_records, progress, main, folds_train, fold_val):
    ds = PTBXL(data_root, sampling_rate=100)
    if not main:  # rank 0 builds the beat cache; the others wait, then open it
        barrier()
    splits = {name: load_beats(ds, folds, settings, label_set, cache_dir, max_records, progress and main)
              for name, folds in (("train", tuple(folds_train)), ("val", (fold_val,)), ("test", (TEST_FOLD,)))}
    if main:
        barrier()
    for name, s in splits.items():
        if s.skipped and main:
            log.warning("%s: %d record(s) without a usable median beat, skipped (first: %s)", name, len(s.skipped),
                        "; ".join(f"{i}: {r}" for i, r in s.skipped[:3]))
        if not len(s.ecg_ids):
            raise ECGError(data_root, f"no {name} record has a usable median beat and a {label_set!r} label")
    return ds, splits


def beat_properties(beats: np.ndarray, rr: np.ndarray, sampling_rate: float, r_index: int) -> tuple[np.ndarray, list[str]]:
    """(n, p) ECG measurements of median beats (NaN where a measurement fails) and their names."""
    scalar = {"qrs_duration_ms": "QRS duration", "pr_interval_ms": "PR interval", "qt_ms": "QT", "qtc_ms": "QTc",
              "heart_rate": "heart rate", "axis_deg": "QRS axis"}
    per_lead = {"r_amplitude_mv": "R amplitude", "s_amplitude_mv": "S amplitude", "st_mv": "ST level",
                "t_amplitude_mv": "T amplitude"}
    names = list(scalar.values()) + [f"{name} {lead}" for name in per_lead.values() for lead in PROPERTY_LEADS]
    out = np.full((len(beats), len(names)), np.nan)
    for i, (b, r) in enumerate(zip(beats, rr)):
        try:
            m = ecg_measure(b, sampling_rate, r_index, rr=float(r) if np.isfinite(r) and r > 0 else None)
        except ECGError:
            continue
        vals = [m[k] for k in scalar] + [m[k][lead] for k in per_lead for lead in PROPERTY_LEADS]
        out[i] = [np.nan if v is None else float(v) for v in vals]
    return out, names


def compute_factors(vae: FactorVAE, ds: PTBXL, splits: dict, settings: BeatSettings, tcfg: FactorTrainConfig,
                    seed: int) -> dict:
    """What ``factors.json`` holds (module docstring, stage 2)."""
    train = splits["train"]
    mu, logvar = encode_beats(vae, train.beats)
    active = active_factors(mu, logvar, rule=tcfg.active_rule, threshold=tcfg.active_threshold)
    if active.n_active == 0:
        raise ECGError(None, f"no latent dimension passes the active-factor rule {tcfg.active_rule} > "
                             f"{tcfg.active_threshold}; max score {max(active.scores):.4g}")
    std = FactorStandardizer.fit(mu, active)
    z = std.transform(mu)
    quantiles = np.quantile(z, np.linspace(0, 1, N_QUANTILES), axis=0).T
    norm = np.array(["NORM" in ds.records.at[int(i), "scp"] for i in train.ecg_ids])
    norm_mean = z[norm].mean(axis=0) if norm.any() else np.zeros(z.shape[1])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(train.beats), min(len(train.beats), tcfg.property_records), replace=False))
    props, names = beat_properties(train.beats[pick], train.rr[pick], settings.beat_rate, settings.r_index)
    table = associate_factors(z[pick], props, list(active.indices), names)
    descriptions, associations = {}, {}
    for f in active.indices:
        descriptions[str(f)] = describe_factor(table, f)
        rows = table[table["factor"] == f].dropna(subset=["rho"])
        rows = rows.reindex(rows["rho"].abs().sort_values(ascending=False).index).head(5)
        associations[str(f)] = [{"property": r.property, "rho": float(r.rho), "n": int(r.n)} for r in rows.itertuples()]
    return {
        "active": active.to_dict(), "standardizer": std.to_dict(),
        "population": {"quantile_levels": np.linspace(0, 100, N_QUANTILES).tolist(), "quantiles": quantiles.tolist(),
                       "norm_mean": norm_mean.tolist(), "n": int(len(z)), "n_norm": int(norm.sum())},
        "descriptions": descriptions, "associations": associations,
        "properties": {"names": names, "records": int(len(pick))},
        "reconstruction": {name: vae_errors(vae, splits[name].beats) for name in ("train", "val")},
    }


class _FactorStages:
    """FactorECG's stages over one run's beats (module docstring) and what they hand on: the VAE, then
    the factors, then the final checkpoint."""

    def __init__(self, out: Path, ds: PTBXL | None, splits: dict[str, BeatSplit], settings: BeatSettings | None,
                 vae_config: FactorVAEConfig, tcfg: FactorTrainConfig, seed: int, base: dict[str, Any],
                 vae_from: Path | None, individual: np.ndarray | None = None):
        self.out, self.ds, self.splits, self.settings = out, ds, splits, settings
        self.individual = individual  # (n, 12, m) individual training beats added to the VAE's (augmentation)
        self.vae_config, self.tcfg, self.seed, self.base, self.vae_from = vae_config, tcfg, seed, base, vae_from
        self.vae: FactorVAE | None = None
        self.factors: dict[str, Any] | None = None
        self.final: tuple[dict, dict] | None = None

    def declare(self) -> list[Stage]:
        t = self.tcfg
        if self.vae_from is None:
            vae = Stage("vae", self._train_vae, trains=self._new_vae, epochs=t.epochs, lr=t.lr, select="best",
                        patience=t.patience, save=self._save_vae, restore=self._restore_vae)
        else:
            vae = Stage("vae", self._reuse_vae, save=self._copy_vae, restore=self._restore_vae)
        return [vae,
                Stage("factors", self._factors, save=self._save_factors, restore=self._restore_factors,
                      main_only=True),
                Stage("factor_models", self._factor_models, save=self._save_model, main_only=True)]

    # ---------------------------------------------------------------- vae
    def _vae_train_beats(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The VAE's training beats (the training medians plus any individual beats) and, with
        ``individual_target="median"``, their reconstruction targets (None: each beat itself)."""
        beats = self.splits["train"].beats
        if self.individual is None or not len(self.individual):
            return beats, None
        inputs = np.concatenate([beats, self.individual])
        if self.tcfg.individual_target == "self":
            return inputs, None
        per_record, extra = divmod(len(self.individual), len(beats))
        if extra:
            raise ECGError(None, f"{len(self.individual)} individual beats are not a whole number per record "
                                 f"({len(beats)} training records)")
        return inputs, np.concatenate([beats, np.repeat(beats, per_record, axis=0)])

    def _new_vae(self, run: StageRun) -> nn.Module:
        """A fresh VAE (every parameter trains) with a step counter for the KL warm-up."""
        train = self.splits["train"]
        seed_everything(self.seed)
        vae = FactorVAE(replace(self.vae_config, lead_scale=ecg_lead_scale(train.beats)))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        n = len(self._vae_train_beats()[0])
        return VAEObjective(vae, math.ceil(math.ceil(n / world) / self.tcfg.batch_size))

    def _vae_checkpoint_config(self, vae: FactorVAE) -> dict[str, Any]:
        return {**self.base, "kind": "factorecg-vae", "vae": vae.config.to_dict()}

    def _train_vae(self, run: StageRun) -> dict[str, Any]:
        objective, val = run.module, self.splits["val"]
        beta_full = objective.vae.config.beta

        def loss_fn(net, batch):
            return net(*batch)

        def outputs(net, batch):
            x = batch[0]
            v = net.vae
            out = v(x, sample=False)
            xn, ls = v.adapter.to_network(x), v.observation_log_sigma(out)
            nll = (0.5 * ((xn - out.recon_net) * torch.exp(-ls)) ** 2 + ls).flatten(1).sum(1)
            kl = kl_elementwise(out.mu, out.logvar).sum(1)
            err = (out.recon - x) * 1e3
            return {"nll": nll, "kl": kl, "abs_uv": err.abs().mean((1, 2)), "sq_uv": (err ** 2).mean((1, 2))}

        def metric(a):
            return {"val_loss": float(np.mean(a["nll"] + beta_full * a["kl"])), "val_nll": float(np.mean(a["nll"])),
                    "val_kl": float(np.mean(a["kl"])), "val_mae_uv": float(np.mean(a["abs_uv"])),
                    "val_rmse_uv": float(np.sqrt(np.mean(a["sq_uv"])))}

        config = run.train_config(batch_size=self.tcfg.batch_size, weight_decay=self.tcfg.weight_decay, grad_clip=10.0)
        result = run.fit(loss_fn, BeatDataset(*self._vae_train_beats()), config,
                         validation=Validation(BeatDataset(val.beats), outputs, metric, name="val_loss", mode="min"),
                         checkpoint_config=self._vae_checkpoint_config(objective.vae))
        self.vae = result.model.vae.cpu().eval()
        return {k: v for k, v in result.facts.items() if k != "stage"}

    def _save_vae(self, run: StageRun) -> None:
        config = self._vae_checkpoint_config(self.vae)
        config["training"] = {**config.get("training", {}), **run.facts["vae"]}
        save_checkpoint(run.dir / "model", self.vae, config)

    def _reuse_vae(self, run: StageRun) -> dict[str, Any]:
        """A trained VAE (``vae_from``) instead of training one, once its beat grid is checked."""
        self.vae = _load_vae(self.vae_from)
        want = (self.settings.beat_samples, float(self.settings.beat_rate))
        have = (self.vae.config.beat_samples, float(self.vae.config.sampling_rate))
        if have != want:
            raise ECGError(self.vae_from, f"VAE beats are {have[0]} samples at {have[1]} Hz; this run needs "
                                          f"{want[0]} at {want[1]} Hz")
        return {"reused": str(self.vae_from)}

    def _copy_vae(self, run: StageRun) -> None:
        shutil.copytree(self.vae_from, run.dir / "model", dirs_exist_ok=True)

    def _restore_vae(self, run: StageRun) -> None:
        self.vae = _load_vae(run.dir / "model")

    # ------------------------------------------------------------ factors
    def _factors(self, run: StageRun) -> dict[str, Any]:
        self.factors = compute_factors(self.vae, self.ds, self.splits, self.settings, self.tcfg, self.seed)
        log.info("factorecg: %d active factors of %d; validation reconstruction %s",
                 len(self.factors["active"]["indices"]), self.vae.config.latent_dim, self.factors["reconstruction"]["val"])
        return {"n_active": len(self.factors["active"]["indices"]), "reconstruction": self.factors["reconstruction"]}

    def _save_factors(self, run: StageRun) -> None:
        write_json_atomic(run.dir / FACTORS_FILE, self.factors, indent=1)

    def _restore_factors(self, run: StageRun) -> None:
        self.factors = json.loads((run.dir / FACTORS_FILE).read_text())

    # ----------------------------------------------------- factor models
    def _factor_models(self, run: StageRun) -> dict[str, Any]:
        """One model per statement on the standardised factors (and rhythm features), and the final checkpoint."""
        vae, factors, t = self.vae, self.factors, self.tcfg
        std = FactorStandardizer.from_dict(factors["standardizer"])
        train, val = self.splits["train"], self.splits["val"]
        rhythm = {name: self.rhythm(name) for name in ("train", "val")} if t.factor_rhythm else None
        models, scaler = fit_factor_models(std.transform(encode_beats(vae, train.beats)[0]),
                                           None if rhythm is None else rhythm["train"], train.y, train.label_names,
                                           std.indices, FactorModelConfig(kind=t.factor_kind, C=t.factor_C,
                                                                          random_state=self.seed))
        x_val = std.transform(encode_beats(vae, val.beats)[0])
        if scaler is not None:
            x_val = np.hstack([x_val, scaler.transform(rhythm["val"])])
        val_auroc, n_scored = macro_auroc(val.y, models.predict_proba(x_val))
        state = {f"vae.{k}": v for k, v in vae.state_dict().items()}
        labels = list(train.label_names)
        vae_facts = {k: v for k, v in load_config(self.out / "vae" / "model").get("training", {}).items()
                     if k in ("epochs_run", "stopped_early", "best_metric", "best_epoch", "metric", "world_size")}
        config = {
            **self.base, "kind": "factorecg", "labels": labels, "vae": vae.config.to_dict(),
            "active": factors["active"], "standardizer": factors["standardizer"],
            "population": factors["population"], "descriptions": factors["descriptions"],
            "associations": factors["associations"], "properties": factors["properties"],
        }
        config["training"] = {
            **self.base["training"], "n_train": int(len(train.ecg_ids)), "n_val": int(len(val.ecg_ids)),
            "label_prevalence": dict(zip(labels, (float(p) for p in models.prevalence))),
            "label_cooccurrence": jaccard_cooccurrence(train.y).round(6).tolist(),
            "factor_models": models.report(), "val_macro_auroc": val_auroc, "val_labels_scored": n_scored,
            "reconstruction": factors["reconstruction"], "n_active": len(std.indices), "vae": vae_facts,
        }
        self.final = (state, config, models, scaler)
        log.info("factorecg: val macro AUROC %.3f over %d labels", val_auroc, n_scored)
        return {"val_macro_auroc": val_auroc, "val_labels_scored": n_scored}

    def _save_model(self, run: StageRun) -> None:
        state, config, models, scaler = self.final
        config["training"]["stages"] = run.facts
        save_checkpoint(self.out / "model", state, config)
        write_factor_models(self.out / "model", load_config(self.out / "model"), models, scaler)


FACTOR_WEIGHTS = "factor_models.safetensors"


def fit_factor_models(z_train: np.ndarray, rhythm_train: np.ndarray | None, y: np.ndarray, labels: Sequence[str],
                      factor_indices: Sequence[int], config: FactorModelConfig
                      ) -> tuple[FactorModels, RhythmScaler | None]:
    """Factor models on standardised factors (n, n_active) and, unless ``rhythm_train`` is None, the raw
    rhythm features (n, len(RHYTHM_FEATURES)) scaled by a ``RhythmScaler`` fitted on them."""
    scaler = None if rhythm_train is None else RhythmScaler.fit(rhythm_train, RHYTHM_FEATURES)
    x = z_train if scaler is None else np.hstack([z_train, scaler.transform(rhythm_train)])
    models = FactorModels(list(labels), [int(i) for i in factor_indices], config,
                          features=[] if scaler is None else list(scaler.names)).fit(x, y)
    return models, scaler


def write_factor_models(directory: str | os.PathLike, config: dict[str, Any], models: FactorModels,
                        scaler: RhythmScaler | None) -> None:
    """Put factor models into a FactorECG checkpoint: arrays in ``factor_models.safetensors`` (the VAE's
    ``model.safetensors`` and its digest stay as they are), their description and the rhythm scaler in
    ``config.json``."""
    from safetensors.numpy import save

    arrays, meta = models.to_state()
    config = {**config, "factor_models": {**meta, "weights": FACTOR_WEIGHTS}}
    config.pop("rhythm", None)
    if scaler is not None:
        config["rhythm"] = scaler.to_dict()
    write_bytes_atomic(Path(directory) / FACTOR_WEIGHTS, save(arrays))
    write_json_atomic(Path(directory) / "config.json", config, indent=2)


def train_vae(splits: dict[str, Any], vae_config: FactorVAEConfig, train_config: FactorTrainConfig,
              out_dir: str | os.PathLike, seed: int = 0, resume: bool = False, progress: bool = True,
              base_config: dict[str, Any] | None = None, individual: np.ndarray | None = None) -> FactorVAE:
    """Only the ``vae`` stage, in ``<out_dir>/vae``, on ``splits["train"]`` (plus ``individual`` beats) and
    ``splits["val"]`` (anything with ``beats``, e.g. real beats plus synthetic ones); ``base_config`` goes into
    its checkpoint."""
    stages = _FactorStages(Path(out_dir), None, splits, None, vae_config, train_config, seed, base_config or {}, None,
                           individual)
    StageRunner(out_dir, stages.declare()[:1], resume=resume, seed=seed, progress=progress).run()
    return stages.vae


def train_factorecg(
    data_root: str | os.PathLike,
    label_set: str = "all",
    out_dir: str | os.PathLike = "runs/factorecg",
    seed: int = 0,
    epochs: int | None = None,
    resume: bool = False,
    cache_dir: str | os.PathLike | None = None,
    max_records: int | None = None,
    beat_rate: float = 100.0,
    vae_config: FactorVAEConfig | None = None,
    train_config: FactorTrainConfig | None = None,
    folds_train: Sequence[int] = TRAIN_FOLDS,
    fold_val: int = 9,
    progress: bool = True,
    vae_from: str | os.PathLike | None = None,
) -> Path:
    """Run the FactorECG stages (module docstring); returns the final checkpoint ``<out_dir>/model``.

    ``beat_rate`` is the VAE's beat grid (100 or 500 Hz; records are read at
    100 Hz and upsampled to 500 Hz for extraction either way). ``max_records``
    keeps the first N records of each split (tests). ``vae_from``: a finished
    run's ``vae/model`` to reuse instead of training one (the VAE never sees
    labels, so one VAE serves every label set); it is copied into this run.
    Works under torchrun.
    """
    if label_set not in LABEL_SETS:
        raise ECGError(None, f"unknown label set {label_set!r}; choose one of {', '.join(LABEL_SETS)}")
    if fold_val in folds_train or TEST_FOLD in folds_train or fold_val == TEST_FOLD:
        raise ECGError(None, f"folds overlap: train {tuple(folds_train)}, validation {fold_val}, test {TEST_FOLD}")
    tcfg = train_config or FactorTrainConfig()
    if epochs is not None:
        tcfg = replace(tcfg, epochs=int(epochs))
    settings = BeatSettings(beat_rate=float(beat_rate))
    vae_cfg = replace(vae_config or FactorVAEConfig(), beat_samples=settings.beat_samples,
                      sampling_rate=settings.beat_rate)
    out_dir = Path(out_dir)
    main = init_distributed().is_main
    ds, splits = _load_splits(data_root, label_set, settings, cache_dir, max_records, progress, main,
                              folds_train, fold_val)
    if main:
        log.info("factorecg: beats ready (%s)", ", ".join(f"{k} {len(s.ecg_ids)}, {len(s.skipped)} skipped"
                                                         for k, s in splits.items()))
    base = {
        "label_set": label_set, "beat": settings.to_dict(),
        "pipeline": Pipeline((Resample(float(ds.sampling_rate)),)).to_dict(),
        "training": provenance(seed, ds.identity(), source_rate=ds.sampling_rate,
                               folds=[int(f) for f in folds_train], fold_val=int(fold_val), fold_test=TEST_FOLD,
                               max_records=max_records, train_config=tcfg.to_dict(),
                               splits={name: _split_facts(s) for name, s in splits.items()}),
    }
    individual = None
    if tcfg.individual_beats and vae_from is None:
        individual = load_individual_beats(ds, tuple(folds_train), settings, tcfg.individual_beats, cache_dir,
                                           max_records, progress and main, ecg_ids=splits["train"].ecg_ids)
    stages = _FactorStages(out_dir, ds, splits, settings, vae_cfg, tcfg, seed, base,
                           None if vae_from is None else Path(vae_from), individual)
    folds = {"train": tuple(folds_train), "val": (fold_val,)}
    stages.rhythm = lambda name: load_rhythm(ds, folds[name], splits[name].ecg_ids, settings, cache_dir, max_records,
                                             progress and main)
    StageRunner(out_dir, stages.declare(), resume=resume, seed=seed, progress=progress).run()
    if main:
        log.info("factorecg saved to %s", out_dir / "model")
    return out_dir / "model"


def train_beat_blackbox(
    data_root: str | os.PathLike,
    label_set: str = "all",
    out_dir: str | os.PathLike = "runs/beat-blackbox",
    seed: int = 0,
    epochs: int | None = None,
    resume: bool = False,
    cache_dir: str | os.PathLike | None = None,
    max_records: int | None = None,
    beat_rate: float = 100.0,
    vae_config: FactorVAEConfig | None = None,
    train_config: FactorTrainConfig | None = None,
    folds_train: Sequence[int] = TRAIN_FOLDS,
    fold_val: int = 9,
    progress: bool = True,
) -> Path:
    """Train the median-beat black box (same encoder as the VAE, BCE); returns ``<out_dir>/model``."""
    if label_set not in LABEL_SETS:
        raise ECGError(None, f"unknown label set {label_set!r}; choose one of {', '.join(LABEL_SETS)}")
    tcfg = train_config or FactorTrainConfig()
    settings = BeatSettings(beat_rate=float(beat_rate))
    vae_cfg = replace(vae_config or FactorVAEConfig(), beat_samples=settings.beat_samples,
                      sampling_rate=settings.beat_rate)
    out_dir = Path(out_dir)
    ds, splits = _load_splits(data_root, label_set, settings, cache_dir, max_records, progress,
                              init_distributed().is_main, folds_train, fold_val)
    train, val = splits["train"], splits["val"]
    labels = list(train.label_names)
    vae_cfg = replace(vae_cfg, lead_scale=ecg_lead_scale(train.beats))
    seed_everything(seed)
    model = BeatClassifier(BeatClassifierConfig.from_vae_config(vae_cfg, len(labels)))

    def loss_fn(net, batch):
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(net(x), y), {}

    def outputs(net, batch):
        x, y = batch
        return {"score": torch.sigmoid(net(x)), "target": y}

    def metric(a):
        value, n = macro_auroc(a["target"], a["score"])
        return {"val_macro_auroc": value, "val_labels_scored": float(n)}

    config: dict[str, Any] = {
        "kind": "beat-blackbox", "model": model.config.to_dict(), "beat": settings.to_dict(),
        "pipeline": Pipeline((Resample(float(ds.sampling_rate)),)).to_dict(), "labels": labels, "label_set": label_set,
        "training": provenance(seed, ds.identity(), labels, train.y, source_rate=ds.sampling_rate,
                               folds=[int(f) for f in folds_train], fold_val=int(fold_val),
                               n_train=int(len(train.ecg_ids)), n_val=int(len(val.ecg_ids)), max_records=max_records,
                               splits={name: _split_facts(s) for name, s in splits.items()}),
    }

    def trains(run: StageRun) -> nn.Module:
        return model  # every parameter trains (the runner is given no model to freeze)

    def fit(run: StageRun) -> dict[str, Any]:
        result = run.fit(loss_fn, BeatDataset(train.beats, train.y),
                         run.train_config(batch_size=tcfg.batch_size, weight_decay=1e-2), checkpoint_config=config,
                         validation=Validation(BeatDataset(val.beats, val.y), outputs, metric, name="val_macro_auroc"))
        return {k: v for k, v in result.facts.items() if k != "stage"}

    def save(run: StageRun) -> None:
        config["training"].update(run.facts[BLACKBOX_STAGE])
        save_checkpoint(out_dir / "model", model, config)

    stage = Stage(BLACKBOX_STAGE, fit, trains=trains, epochs=int(epochs or tcfg.blackbox_epochs), lr=tcfg.blackbox_lr,
                  select="best", patience=tcfg.blackbox_patience, save=save, directory="")
    StageRunner(out_dir, [stage], resume=resume, seed=seed, progress=progress).run()
    return out_dir / "model"


def _run(args: argparse.Namespace, fn, **extra) -> int:
    return run_training(lambda: fn(
        args.data, label_set=args.labels, out_dir=args.out, seed=args.seed, epochs=args.epochs, resume=args.resume,
        cache_dir=args.cache, max_records=args.max_records, beat_rate=float(args.beat_rate),
        progress=not args.no_progress, **extra))


def run(args: argparse.Namespace) -> int:
    """``ecglens train factorecg`` (options: ``factorecg.options``)."""
    recipe = FactorTrainConfig() if args.active_threshold is None else FactorTrainConfig(
        active_threshold=args.active_threshold)
    return _run(args, train_factorecg, train_config=recipe, vae_from=args.vae_from)


def run_blackbox(args: argparse.Namespace) -> int:
    """``ecglens train beat-blackbox`` (options: ``factorecg.options``)."""
    return _run(args, train_beat_blackbox)
