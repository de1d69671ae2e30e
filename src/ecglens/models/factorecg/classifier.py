"""FactorECG checkpoints as ``Classifier``s: record -> median beat -> model -> probabilities.

Both the explainable model (kind ``factorecg``: beat -> VAE posterior mean ->
standardised active factors -> one logistic regression per statement) and the
median-beat black box (kind ``beat-blackbox``) read the record through the
stored pipeline (resampling to the training records' rate), extract the median
beat with the stored ``BeatSettings`` and score the beat. A record without a
usable beat is an ``ECGError`` naming it in ``preprocess`` (whose output, the
model input, is the median beat) and so in ``predict_ecgs``;
``predict_batch`` (bulk evaluation) predicts the training prevalence for such
rows instead and lists them in ``skipped`` (row index, reason).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError, ECGError
from ...io.record import ECG
from ...preprocess import Pipeline
from ..classifier import Classifier
from ..loading import config_section, config_value, fit_weights
from .blackbox import BeatClassifier, BeatClassifierConfig
from .config import FactorVAEConfig
from .data import BeatSettings, ecg_factorbeat, ecg_factorbeat_batch
from .factors import ActiveFactors, FactorModels, FactorStandardizer
from .vae import FactorVAE, encode_beats

log = logging.getLogger(__name__)


class BeatModelClassifier(Classifier):
    """A Classifier whose model reads one median beat per record (see the module docstring).

    Subclasses define ``predict_beats(beats) -> (n, k)``. ``prevalence`` (k,)
    is what ``predict_batch`` predicts for rows without a usable beat.
    """

    def __init__(self, model: nn.Module, labels: list[str], pipeline: Pipeline, settings: BeatSettings,
                 prevalence: np.ndarray, config: dict[str, Any], device=None, source=None):
        rate = pipeline.output_rate
        if rate is None:
            raise ConfigError(source, "a beat model's pipeline must resample to the rate of its training records")
        duration = settings.beat_samples / settings.beat_rate
        super().__init__(model, labels, pipeline, rate, window_s=duration, config=config, device=device,
                         source=source)
        self.settings = settings
        self.prevalence = np.asarray(prevalence, dtype=np.float64)
        if self.prevalence.shape != (len(self.labels),):
            raise ConfigError(source, f"prevalence has shape {self.prevalence.shape}, need ({len(self.labels)},)")
        self.skipped: list[tuple[int, str]] = []

    def predict_beats(self, beats: np.ndarray) -> np.ndarray:
        """(n, k) network probabilities (uncalibrated) for (n, 12, beat_samples) median beats in mV."""
        x = torch.from_numpy(np.ascontiguousarray(beats, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            out = [torch.sigmoid(self.model(x[i:i + self.batch_size])) for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros((0, len(self.labels)))

    def beat(self, ecg: ECG) -> tuple[np.ndarray, dict]:
        """The model's median beat of a record (after the stored pipeline) and its info; ECGError naming it if none."""
        x = super().preprocess(ecg)
        return ecg_factorbeat(x, self.sampling_rate, self.settings, source=ecg.source or None)

    def preprocess(self, ecg: ECG) -> np.ndarray:
        """The model input for one record: its median beat (12, beat_samples); ECGError naming it if none."""
        return self.beat(ecg)[0]

    def predict_proba(self, ecg: ECG) -> np.ndarray:
        """(k,) probabilities for one record."""
        return self.calibrate(self.predict_beats(self.preprocess(ecg)[None]))[0]

    def predict_batch(self, signals: np.ndarray, sampling_rate: float) -> np.ndarray:
        """(n, k) probabilities for (n, 12, t) pipeline outputs; rows without a beat get the training prevalence
        (``skipped``), calibrated like the others."""
        x = np.asarray(signals, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != 12:
            raise ECGError(None, f"expected signals shaped (n, 12, samples), got {x.shape}")
        beats, infos = ecg_factorbeat_batch(x, sampling_rate, self.settings, sources=[f"row {i}" for i in range(len(x))])
        self.skipped = [(i, str(e)) for i, e in enumerate(infos) if isinstance(e, ECGError)]
        ok = [i for i, e in enumerate(infos) if not isinstance(e, ECGError)]
        out = np.tile(self.prevalence, (len(x), 1))
        if ok:
            out[ok] = self.predict_beats(beats[ok])
        if self.skipped:
            log.warning("%d of %d record(s) have no usable median beat; predicted the training prevalence: %s",
                        len(self.skipped), len(x), "; ".join(r for _, r in self.skipped[:3]))
        return self.calibrate(out)  # the prevalence rows too, so calibration keeps every ranking

    def predict_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        """(n, k) probabilities for ``preprocess`` outputs (median beats)."""
        if not inputs:
            return np.zeros((0, len(self.labels)))
        return self.calibrate(self.predict_beats(np.stack(inputs)))

    def predict_ecgs(self, ecgs: list[ECG]) -> np.ndarray:
        """(n, k) probabilities for records of any rate; ECGError naming a record without a usable beat."""
        if not ecgs:
            return np.zeros((0, len(self.labels)))
        return self.calibrate(self.predict_beats(np.stack([self.preprocess(e) for e in ecgs])))


class FactorECGClassifier(BeatModelClassifier):
    """The explainable FactorECG model: its parts are public for explanations.

    ``vae`` (CPU), ``active``, ``standardizer``, ``factor_models``,
    ``population`` (quantiles of each standardised factor on the training set,
    the NORM mean) and ``descriptions`` (factor index as str -> text).
    """

    def __init__(self, vae: FactorVAE, factor_models: FactorModels, standardizer: FactorStandardizer,
                 active: ActiveFactors, settings: BeatSettings, pipeline: Pipeline, config: dict[str, Any], device=None,
                 source=None):
        super().__init__(vae, factor_models.statements, pipeline, settings, factor_models.prevalence, config, device,
                         source)
        self.vae, self.factor_models, self.standardizer, self.active = self.model, factor_models, standardizer, active
        self.population = config.get("population", {})
        self.descriptions = {str(k): v for k, v in config.get("descriptions", {}).items()}

    def factors(self, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means (n, latent_dim) and standardised active factors (n, n_active) of beats."""
        mu, _ = encode_beats(self.vae, beats, self.batch_size)
        return mu, self.standardizer.transform(mu)

    def predict_beats(self, beats: np.ndarray) -> np.ndarray:
        return self.factor_models.predict_proba(self.factors(beats)[1])

    def percentiles(self, z_std: np.ndarray) -> np.ndarray:
        """Training-population percentile (0-100) of each standardised factor value, (n_active,)."""
        levels = np.asarray(self.population["quantile_levels"], dtype=np.float64)
        q = np.asarray(self.population["quantiles"], dtype=np.float64)
        return np.array([np.interp(v, q[j], levels) for j, v in enumerate(np.asarray(z_std).ravel())])

    def describe(self, factor: int) -> str:
        return self.descriptions.get(str(int(factor)), f"factor {factor}")


def factorecg_from_checkpoint(state: dict[str, torch.Tensor], config: dict[str, Any], path=None,
                              device=None) -> FactorECGClassifier:
    """Rebuild a FactorECG classifier from ``load_checkpoint`` output (no training data needed)."""
    vae = FactorVAE(config_section(config, "vae", FactorVAEConfig, path))
    arrays = {k.split(".", 1)[1]: v.cpu().numpy() for k, v in state.items() if k.startswith("factor_models.")}
    models = config_value(config, "factor_models", path, lambda d: FactorModels.from_state(arrays, d))
    standardizer = config_value(config, "standardizer", path, FactorStandardizer.from_dict)
    active = config_value(config, "active", path, ActiveFactors.from_dict)
    settings = config_value(config, "beat", path, BeatSettings.from_dict)
    pipeline = config_value(config, "pipeline", path, Pipeline.from_dict)
    fit_weights(vae, {k[4:]: v for k, v in state.items() if k.startswith("vae.")}, path, "VAE")
    if list(models.factor_indices) != list(standardizer.indices):
        raise ConfigError(path, "factor models and standardiser were built on different factors")
    return FactorECGClassifier(vae, models, standardizer, active, settings, pipeline, config, device=device,
                               source=path)


def blackbox_from_checkpoint(state: dict[str, torch.Tensor], config: dict[str, Any], path=None,
                             device=None) -> BeatModelClassifier:
    """Rebuild the median-beat black box from ``load_checkpoint`` output."""
    model = fit_weights(BeatClassifier(config_section(config, "model", BeatClassifierConfig, path)), state, path)
    labels = config_value(config, "labels", path, list)
    prevalence = config_value(config, "training", path,
                              lambda t: np.array([t["label_prevalence"][n] for n in labels], dtype=np.float64))
    settings = config_value(config, "beat", path, BeatSettings.from_dict)
    pipeline = config_value(config, "pipeline", path, Pipeline.from_dict)
    return BeatModelClassifier(model, labels, pipeline, settings, prevalence, config, device=device, source=path)


__all__ = ["BeatModelClassifier", "FactorECGClassifier", "blackbox_from_checkpoint", "factorecg_from_checkpoint"]
