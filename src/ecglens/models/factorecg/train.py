"""Train FactorECG on PTB-XL in resumable stages (``ecglens train factorecg`` / ``beat-blackbox``).

Stages, each skipped when its output exists (so ``resume`` continues where a
run stopped), with its wall time logged to ``<out>/train_log.jsonl``:

1. ``beats``: every record's median beat, cached (``data.load_beats``).
2. ``vae`` -> ``<out>/vae/model``: the beta-VAE on training-fold median beats
   (folds 1-8), the KL weight ramped up over ``kl_warmup_epochs``; early
   stopping on the validation fold's negative beta-ELBO (the training
   objective at full beta), best epoch kept. Runs under torchrun via Trainer.
   Only median beats are used, not individual beats: the model sees median
   beats at inference, and single beats carry noise the factors should not learn.
3. ``factors`` -> ``<out>/factors.json``: the active-factor rule on the
   training posteriors, the standardiser, population statistics (quantiles of
   each standardised factor, the NORM records' mean), reconstruction error on
   the validation and test folds, and a data-driven description of each factor
   (Spearman correlation with ``ecg_measure`` properties of training beats).
4. ``model`` -> ``<out>/model``: one logistic regression per statement of the
   label set on the standardised factors; the final checkpoint (kind
   ``factorecg``): VAE weights and factor-model arrays in safetensors, the rest
   in config.json. Loading it needs no training data.

``train_beat_blackbox`` trains the comparison network (``BeatClassifier``, the
VAE's encoder with a statement head, BCE, early stopping on validation macro
AUROC) on the same beats; its checkpoint has kind ``beat-blackbox``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ... import __version__
from ...beats import ecg_measure
from ...datasets import LABEL_SETS, PTBXL, TRAIN_FOLDS, jaccard_cooccurrence
from ...errors import ECGError
from ...io.leads import STANDARD_LEADS
from ...metrics import macro_auroc
from ...preprocess import Pipeline, Resample
from ...training import (
    TrainConfig,
    Trainer,
    Validation,
    barrier,
    cleanup,
    init_distributed,
    load_checkpoint,
    load_config,
    peak_rss_mib,
    read_log,
    save_checkpoint,
    seed_everything,
)
from .blackbox import BeatClassifier, BeatClassifierConfig
from .config import FactorVAEConfig
from .data import BeatSettings, BeatSplit, load_beats
from .factors import FactorModelConfig, FactorModels, FactorStandardizer, active_factors
from .losses import kl_elementwise, kl_warmup
from .traverse import associate_factors, describe_factor
from .vae import FactorVAE, decode_latents, ecg_lead_scale, encode_beats

log = logging.getLogger(__name__)

TEST_FOLD = 10
N_QUANTILES = 101
PROPERTY_LEADS = STANDARD_LEADS


@dataclass(frozen=True)
class FactorTrainConfig:
    """Training settings of the FactorECG stages (the VAE architecture is ``FactorVAEConfig``).

    ``active_rule``/``active_threshold``: a latent dimension is a factor when its
    mean KL to the prior over the training beats exceeds the threshold (nats).
    A collapsed dimension sits at ~0 nats. On the local PTB-XL subset (2,767 training
    beats, beta=4, 35 epochs) no dimension collapsed: the 32 ranged from 0.9 to
    2.8 nats, so all are kept (FactorECG kept 21 of 32 with far more data). The
    rule, threshold and both per-dimension statistics are stored with the model.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int | None = 10
    active_rule: str = "kl"
    active_threshold: float = 0.1
    factor_C: float = 1.0
    property_records: int = 2000
    blackbox_epochs: int = 60
    blackbox_patience: int | None = 10
    blackbox_lr: float = 1e-3

    def to_dict(self) -> dict:
        return asdict(self)


class BeatDataset(Dataset):
    """``(beat,)`` or ``(beat, labels)`` items from in-memory (n, 12, m) beats."""

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

    def forward(self, x: torch.Tensor):
        beta = self.beta()
        if self.training:
            self.step += 1
        return self.vae.loss(x, beta)


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
    return {"n": int(len(split.ecg_ids)), "skipped": {"count": len(split.skipped), "records": [[i, r] for i, r in split.skipped]},
            "dropped_no_label": len(split.dropped)}


class _StageLog:
    """Stage records appended to ``<out>/train_log.jsonl`` (the VAE's epochs are copied in too)."""

    def __init__(self, out_dir: Path, main: bool):
        self.path, self.main = out_dir / "train_log.jsonl", main

    def write(self, record: dict) -> None:
        if "epoch" not in record:
            record = {**record, "peak_rss_mib": peak_rss_mib()}  # the process's peak up to the end of this stage
        if self.main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


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


def _vae_stage(splits, vae_cfg: FactorVAEConfig, tcfg: FactorTrainConfig, out_dir: Path, seed: int, resume: bool,
               progress: bool, main: bool, base_config: dict) -> FactorVAE:
    train, val = splits["train"], splits["val"]
    vae_cfg = replace(vae_cfg, lead_scale=ecg_lead_scale(train.beats))
    seed_everything(seed)
    vae = FactorVAE(vae_cfg)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps = math.ceil(math.ceil(len(train.beats) / world) / tcfg.batch_size)
    objective = VAEObjective(vae, steps)
    beta_full = vae_cfg.beta

    def loss_fn(net, batch):
        return net(batch[0])

    def outputs(net, batch):
        x = batch[0]
        v = net.vae
        out = v(x, sample=False)
        xn, ls = v.adapter.to_network(x), v.observation_log_sigma()
        nll = (0.5 * ((xn - out.recon_net) * torch.exp(-ls)) ** 2 + ls).flatten(1).sum(1)
        kl = kl_elementwise(out.mu, out.logvar).sum(1)
        err = (out.recon - x) * 1e3
        return {"nll": nll, "kl": kl, "abs_uv": err.abs().mean((1, 2)), "sq_uv": (err ** 2).mean((1, 2))}

    def metric(a):
        return {"val_loss": float(np.mean(a["nll"] + beta_full * a["kl"])), "val_nll": float(np.mean(a["nll"])),
                "val_kl": float(np.mean(a["kl"])), "val_mae_uv": float(np.mean(a["abs_uv"])),
                "val_rmse_uv": float(np.sqrt(np.mean(a["sq_uv"])))}

    config = {**base_config, "kind": "factorecg-vae", "vae": vae_cfg.to_dict()}
    train_cfg = TrainConfig(epochs=tcfg.epochs, batch_size=tcfg.batch_size, lr=tcfg.lr, weight_decay=tcfg.weight_decay,
                            select="best", patience=tcfg.patience, seed=seed, progress=progress, stage="vae",
                            grad_clip=10.0)
    trainer = Trainer(objective, loss_fn, BeatDataset(train.beats), train_cfg,
                      validation=Validation(BeatDataset(val.beats), outputs, metric, name="val_loss", mode="min"),
                      run_dir=out_dir / "vae", checkpoint_config=config)
    result = trainer.fit(resume=resume)
    config["training"] = {**config.get("training", {}), **{k: v for k, v in result.facts.items() if k != "stage"}}
    if main:
        save_checkpoint(out_dir / "vae" / "model", result.model.vae, config)
    barrier()
    return result.model.vae


def _copy_vae(source: Path, target: Path, settings: BeatSettings) -> None:
    """Copy a trained VAE checkpoint into a run after checking that its beat grid matches."""
    vae, _ = load_vae(source)
    want = (settings.beat_samples, float(settings.beat_rate))
    if (vae.config.beat_samples, float(vae.config.sampling_rate)) != want:
        raise ECGError(source, f"VAE beats are {vae.config.beat_samples} samples at {vae.config.sampling_rate} Hz; "
                               f"this run needs {want[0]} at {want[1]} Hz")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)


def load_vae(directory: str | os.PathLike, prefix: str = "", device: str = "cpu") -> tuple[FactorVAE, dict]:
    """A FactorVAE from a checkpoint whose config holds ``vae`` (weights under ``prefix``)."""
    state, config = load_checkpoint(directory, device=device)
    vae = FactorVAE(FactorVAEConfig.from_dict(config["vae"]))
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        vae.load_state_dict(weights)
    except RuntimeError as exc:
        raise ECGError(directory, f"VAE weights do not fit the configured model ({str(exc).splitlines()[0]})") from exc
    return vae.eval(), config


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


def _factors_stage(vae: FactorVAE, ds: PTBXL, splits: dict, settings: BeatSettings, tcfg: FactorTrainConfig,
                   seed: int) -> dict:
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
        "reconstruction": {name: vae_errors(vae, splits[name].beats) for name in ("train", "val", "test")},
    }


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
    final = out_dir / "model"
    dist = init_distributed()
    stages = _StageLog(out_dir, dist.is_main)
    if final.joinpath("config.json").is_file() and resume:
        log.info("factorecg: %s exists; nothing to do", final)
        return final
    if out_dir.joinpath("vae", "last").exists() and not resume:
        raise ECGError(out_dir, "holds a previous run; pass resume=True (--resume) or choose another directory")

    t0 = time.perf_counter()
    ds, splits = _load_splits(data_root, label_set, settings, cache_dir, max_records, progress, dist.is_main,
                              folds_train, fold_val)
    stages.write({"stage": "beats", "seconds": time.perf_counter() - t0,
                  **{name: _split_facts(s) for name, s in splits.items()}})
    if dist.is_main:
        log.info("factorecg: beats ready (%s)", ", ".join(f"{k} {len(s.ecg_ids)}, {len(s.skipped)} skipped"
                                                         for k, s in splits.items()))
    base = {
        "label_set": label_set, "beat": settings.to_dict(),
        "pipeline": Pipeline((Resample(float(ds.sampling_rate)),)).to_dict(),
        "training": {"data": ds.identity(), "source_rate": ds.sampling_rate,
                     "folds": [int(f) for f in folds_train], "fold_val": int(fold_val), "fold_test": TEST_FOLD,
                     "seed": int(seed), "max_records": max_records, "train_config": tcfg.to_dict(),
                     "splits": {name: _split_facts(s) for name, s in splits.items()}},
    }

    vae_dir = out_dir / "vae" / "model"
    t0 = time.perf_counter()
    if vae_from is not None and not vae_dir.joinpath("config.json").is_file() and dist.is_main:
        _copy_vae(Path(vae_from), vae_dir, settings)
    barrier()
    if vae_dir.joinpath("config.json").is_file():
        vae, _ = load_vae(vae_dir)
        log.info("factorecg: stage vae done before (%s), skipped", vae_dir)
        stages.write({"stage": "vae", "skipped": True, "seconds": time.perf_counter() - t0})
    else:
        vae = _vae_stage(splits, vae_cfg, tcfg, out_dir, seed, resume, progress, dist.is_main, base)
        vae = vae.cpu().eval()
        if dist.is_main:
            for record in read_log(out_dir / "vae"):
                stages.write(record)
        stages.write({"stage": "vae", "seconds": time.perf_counter() - t0})
    if not dist.is_main:  # the remaining stages are cheap and run on rank 0 only
        return final
    vae_facts = {k: v for k, v in load_config(vae_dir).get("training", {}).items()
                 if k in ("epochs_run", "stopped_early", "best_metric", "best_epoch", "metric", "world_size")}

    facts_path = out_dir / "factors.json"
    t0 = time.perf_counter()
    if facts_path.is_file():
        factors = json.loads(facts_path.read_text())
        stages.write({"stage": "factors", "skipped": True, "seconds": time.perf_counter() - t0})
    else:
        factors = _factors_stage(vae, ds, splits, settings, tcfg, seed)
        tmp = facts_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(factors, indent=1))
        os.replace(tmp, facts_path)
        stages.write({"stage": "factors", "seconds": time.perf_counter() - t0,
                      "n_active": len(factors["active"]["indices"]), "reconstruction": factors["reconstruction"]})
    log.info("factorecg: %d active factors of %d; test reconstruction %s", len(factors["active"]["indices"]),
             vae.config.latent_dim, factors["reconstruction"]["test"])

    t0 = time.perf_counter()
    std = FactorStandardizer.from_dict(factors["standardizer"])
    train, val = splits["train"], splits["val"]
    z_train = std.transform(encode_beats(vae, train.beats)[0])
    models = FactorModels(list(train.label_names), list(std.indices), FactorModelConfig(C=tcfg.factor_C)).fit(z_train, train.y)
    val_scores = models.predict_proba(std.transform(encode_beats(vae, val.beats)[0]))
    val_auroc, n_scored = macro_auroc(val.y, val_scores)
    arrays, meta = models.to_state()
    state = {f"vae.{k}": v for k, v in vae.state_dict().items()}
    state.update({f"factor_models.{k}": torch.from_numpy(v) for k, v in arrays.items()})
    labels = list(train.label_names)
    config = {
        **base, "kind": "factorecg", "labels": labels, "vae": vae.config.to_dict(),
        "active": factors["active"], "standardizer": factors["standardizer"], "factor_models": meta,
        "population": factors["population"], "descriptions": factors["descriptions"],
        "associations": factors["associations"], "properties": factors["properties"],
    }
    config["training"] = {
        **base["training"], "n_train": int(len(train.ecg_ids)), "n_val": int(len(val.ecg_ids)),
        "label_prevalence": dict(zip(labels, (float(p) for p in models.prevalence))),
        "label_cooccurrence": jaccard_cooccurrence(train.y).round(6).tolist(),
        "factor_models": models.report(), "val_macro_auroc": val_auroc, "val_labels_scored": n_scored,
        "reconstruction": factors["reconstruction"], "n_active": len(std.indices), "vae": vae_facts,
        "ecglens_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    save_checkpoint(final, state, config)
    stages.write({"stage": "factor_models", "seconds": time.perf_counter() - t0, "val_macro_auroc": val_auroc})
    log.info("factorecg saved to %s (val macro AUROC %.3f over %d labels)", final, val_auroc, n_scored)
    return final


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
    dist = init_distributed()
    ds, splits = _load_splits(data_root, label_set, settings, cache_dir, max_records, progress, dist.is_main,
                              folds_train, fold_val)
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

    prevalence = train.y.mean(axis=0)
    config: dict[str, Any] = {
        "kind": "beat-blackbox", "model": model.config.to_dict(), "beat": settings.to_dict(),
        "pipeline": Pipeline((Resample(float(ds.sampling_rate)),)).to_dict(), "labels": labels, "label_set": label_set,
        "training": {"data": ds.identity(), "source_rate": ds.sampling_rate, "folds": [int(f) for f in folds_train],
                     "fold_val": int(fold_val), "n_train": int(len(train.ecg_ids)), "n_val": int(len(val.ecg_ids)),
                     "seed": int(seed), "max_records": max_records,
                     "splits": {name: _split_facts(s) for name, s in splits.items()},
                     "label_prevalence": dict(zip(labels, (float(p) for p in prevalence))),
                     "ecglens_version": __version__,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }
    train_cfg = TrainConfig(epochs=int(epochs or tcfg.blackbox_epochs), batch_size=tcfg.batch_size, lr=tcfg.blackbox_lr,
                            weight_decay=1e-2, select="best", patience=tcfg.blackbox_patience, seed=seed,
                            progress=progress, stage="blackbox")
    trainer = Trainer(model, loss_fn, BeatDataset(train.beats, train.y), train_cfg,
                      validation=Validation(BeatDataset(val.beats, val.y), outputs, metric, name="val_macro_auroc"),
                      run_dir=out_dir, checkpoint_config=config)
    return trainer.fit_and_save(out_dir / "model", resume=resume)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="PTB-XL root (ptbxl_database.csv, records100/)")
    parser.add_argument("--labels", default="all", choices=LABEL_SETS, help="label set (default all)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory; the final model goes to RUN_DIR/model")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: 100 for the VAE, 60 for the black box)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR, skipping finished stages")
    parser.add_argument("--cache", metavar="DIR", help="beat cache directory (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    parser.add_argument("--beat-rate", type=int, default=100, choices=(100, 500),
                        help="median-beat grid of the VAE in Hz (default 100: 120 samples per 1.2-s beat)")
    parser.add_argument("--max-records", type=int, help="use only the first N records of each split (quick checks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train factorecg``."""
    _common_arguments(parser)
    parser.add_argument("--active-threshold", type=float, default=FactorTrainConfig.active_threshold,
                        help="a latent dimension is a factor when its mean KL exceeds this (nats; default %(default)s)")
    parser.add_argument("--vae-from", metavar="DIR",
                        help="reuse a trained VAE (a run's vae/model) instead of training one, e.g. for another label set")


def add_blackbox_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train beat-blackbox``."""
    _common_arguments(parser)


def _run(args: argparse.Namespace, fn, **extra) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main = init_distributed().is_main
    try:
        path = fn(args.data, label_set=args.labels, out_dir=args.out, seed=args.seed, epochs=args.epochs,
                  resume=args.resume, cache_dir=args.cache, max_records=args.max_records,
                  beat_rate=float(args.beat_rate), progress=not args.no_progress, **extra)
    finally:
        cleanup()
    if main:
        print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    return _run(args, train_factorecg, train_config=FactorTrainConfig(active_threshold=args.active_threshold),
                vae_from=args.vae_from)


def run_blackbox(args: argparse.Namespace) -> int:
    return _run(args, train_beat_blackbox)
