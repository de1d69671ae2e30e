"""FactorECG checkpoints as ``Classifier``s: record -> median beat -> model -> probabilities.

Both the explainable model (kind ``factorecg``: beat -> VAE posterior mean ->
standardised active factors, plus the record's rhythm features when its factor
models use them -> one model per statement) and the
median-beat black box (kind ``beat-blackbox``) read the record through the
stored pipeline (resampling to the training records' rate), extract the median
beat with the stored ``BeatSettings`` and score the beat. A record without a
usable beat is an ``ECGError`` naming it in ``preprocess`` (whose output, the
model input, is the median beat) and so in ``predict_ecgs``;
``predict_batch`` (bulk evaluation) predicts the training prevalence for such
rows instead and lists them in ``skipped`` (row index, reason).

Statements one median beat cannot carry (``statements.beyond_one_beat()``)
are not assessable (reported, never called) for a model that sees only the
beat: the black box, and FactorECG without rhythm features. FactorECG with
rhythm features judges them from the record's R peaks; its model input is
then (13, beat_samples) float64: the median beat and a row holding the
rhythm features (``RHYTHM_FEATURES`` order, then zeros), as in the beat cache.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...beats.rhythm import RHYTHM_FEATURES
from ...errors import ConfigError, ECGError
from ...io.record import ECG
from ...preprocess import Pipeline
from ...statements import beyond_one_beat
from ..classifier import Classifier
from ..loading import config_section, config_value, fit_weights
from .blackbox import BeatClassifier, BeatClassifierConfig
from .config import FactorVAEConfig
from .data import BeatSettings, beat_rhythm, ecg_factorbeat, ecg_factorbeat_batch
from .factors import ActiveFactors, FactorModels, FactorStandardizer, RhythmScaler
from .vae import FactorVAE, encode_beats

log = logging.getLogger(__name__)


class BeatModelClassifier(Classifier):
    """A Classifier whose model reads one median beat per record (see the module docstring).

    Subclasses define ``predict_beats(beats) -> (n, k)``. ``prevalence`` (k,)
    is what ``predict_batch`` predicts for rows without a usable beat.
    ``judges_rhythm`` says whether the model sees more than the beat.
    """

    judges_rhythm = False

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

    @property
    def beyond_beat(self) -> list[str]:
        """The model's statements one median beat cannot carry (``statements.beyond_one_beat``)."""
        return [s for s in self.labels if s in beyond_one_beat()]

    @property
    def assessable(self) -> np.ndarray:
        """The calibration's mask, without the statements beyond one beat unless the model judges rhythm."""
        mask = super().assessable.copy()
        if not self.judges_rhythm:
            mask &= ~np.isin(self.labels, self.beyond_beat)
        return mask

    def predict_records(self, signals: np.ndarray, beats: np.ndarray, infos: list[dict]) -> np.ndarray:
        """(n, k) uncalibrated probabilities of records with usable beats (``predict_batch``); only the beats count here."""
        return self.predict_beats(beats)

    def beat(self, ecg: ECG) -> tuple[np.ndarray, dict]:
        """The model's median beat of a record (after the stored pipeline) and its info; ECGError naming it if none."""
        x = super().preprocess(ecg)
        return ecg_factorbeat(x, self.sampling_rate, self.settings, source=ecg.source or None)

    def preprocess(self, ecg: ECG) -> np.ndarray:
        """The model input for one record: its median beat (12, beat_samples); ECGError naming it if none."""
        return self.beat(ecg)[0]

    def predict_proba(self, ecg: ECG) -> np.ndarray:
        """(k,) probabilities for one record."""
        return self.predict_inputs([self.preprocess(ecg)])[0]

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
            out[ok] = self.predict_records(x[ok], beats[ok], [infos[i] for i in ok])
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
        return self.predict_inputs([self.preprocess(e) for e in ecgs])


class FactorECGClassifier(BeatModelClassifier):
    """The explainable FactorECG model: its parts are public for explanations.

    ``vae`` (CPU), ``active``, ``standardizer``, ``factor_models``,
    ``rhythm`` (the ``RhythmScaler`` of the rhythm features, None without),
    ``population`` (quantiles of each standardised factor on the training set,
    the NORM mean) and ``descriptions`` (factor index as str -> text).
    """

    def __init__(self, vae: FactorVAE, factor_models: FactorModels, standardizer: FactorStandardizer,
                 active: ActiveFactors, settings: BeatSettings, pipeline: Pipeline, config: dict[str, Any], device=None,
                 source=None, rhythm: RhythmScaler | None = None):
        super().__init__(vae, factor_models.statements, pipeline, settings, factor_models.prevalence, config, device,
                         source)
        self.vae, self.factor_models, self.standardizer, self.active = self.model, factor_models, standardizer, active
        self.rhythm = rhythm
        if list(factor_models.features) != ([] if rhythm is None else list(rhythm.names)):
            raise ConfigError(source, f"factor models use features {factor_models.features}, the rhythm scaler "
                                      f"{None if rhythm is None else rhythm.names}")
        if rhythm is not None and (list(rhythm.names) != list(RHYTHM_FEATURES) or len(rhythm.names) > settings.beat_samples):
            raise ConfigError(source, f"rhythm features {rhythm.names} are not this version's {list(RHYTHM_FEATURES)}")
        self.population = config.get("population", {})
        self.descriptions = {str(k): v for k, v in config.get("descriptions", {}).items()}

    @property
    def judges_rhythm(self) -> bool:
        return self.rhythm is not None

    def factors(self, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means (n, latent_dim) and standardised active factors (n, n_active) of beats."""
        mu, _ = encode_beats(self.vae, beats, self.batch_size)
        return mu, self.standardizer.transform(mu)

    def model_inputs(self, z_std: np.ndarray, rhythm: np.ndarray | None = None) -> np.ndarray:
        """The factor models' inputs: standardised factors (n, n_active), then the scaled rhythm features."""
        if self.rhythm is None:
            return np.atleast_2d(z_std)
        if rhythm is None:
            raise ECGError(None, "this FactorECG model needs the records' rhythm features, not only their beats")
        return np.hstack([np.atleast_2d(z_std), self.rhythm.transform(rhythm)])

    def predict_beats(self, beats: np.ndarray, rhythm: np.ndarray | None = None) -> np.ndarray:
        """(n, k) uncalibrated probabilities of median beats and (with rhythm features) their records' raw
        rhythm features (n, len(RHYTHM_FEATURES))."""
        return self.factor_models.predict_proba(self.model_inputs(self.factors(beats)[1], rhythm))

    def beat_and_rhythm(self, ecg: ECG) -> tuple[np.ndarray, dict, np.ndarray | None]:
        """The median beat, its info and (with rhythm features) the record's raw rhythm features."""
        x = Classifier.preprocess(self, ecg)
        beat, info = ecg_factorbeat(x, self.sampling_rate, self.settings, source=ecg.source or None)
        rhythm = None if self.rhythm is None else beat_rhythm(x, self.sampling_rate, info, ecg.source or None)
        return beat, info, rhythm

    def preprocess(self, ecg: ECG) -> np.ndarray:
        """The model input: the median beat, with a rhythm-feature row when the model uses rhythm (module docstring)."""
        beat, _, rhythm = self.beat_and_rhythm(ecg)
        if rhythm is None:
            return beat
        row = np.zeros((1, beat.shape[-1]))
        row[0, :len(rhythm)] = rhythm
        return np.concatenate([beat.astype(np.float64), row])  # float64: the rhythm features keep their precision

    def predict_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        if not inputs or self.rhythm is None:
            return super().predict_inputs(inputs)
        x = np.stack(inputs)
        return self.calibrate(self.predict_beats(x[:, :12], x[:, 12, :len(self.rhythm.names)].astype(np.float64)))

    def predict_records(self, signals: np.ndarray, beats: np.ndarray, infos: list[dict]) -> np.ndarray:
        rhythm = None if self.rhythm is None else np.stack(
            [beat_rhythm(x, self.sampling_rate, info, info.get("source")) for x, info in zip(signals, infos)])
        return self.predict_beats(beats, rhythm)

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
    models = config_value(config, "factor_models", path, lambda d: FactorModels.from_state(_factor_arrays(state, d, path), d))
    rhythm = None if config.get("rhythm") is None else config_value(config, "rhythm", path, RhythmScaler.from_dict)
    standardizer = config_value(config, "standardizer", path, FactorStandardizer.from_dict)
    active = config_value(config, "active", path, ActiveFactors.from_dict)
    settings = config_value(config, "beat", path, BeatSettings.from_dict)
    pipeline = config_value(config, "pipeline", path, Pipeline.from_dict)
    fit_weights(vae, {k[4:]: v for k, v in state.items() if k.startswith("vae.")}, path, "VAE")
    if list(models.factor_indices) != list(standardizer.indices):
        raise ConfigError(path, "factor models and standardiser were built on different factors")
    return FactorECGClassifier(vae, models, standardizer, active, settings, pipeline, config, device=device,
                               source=path, rhythm=rhythm)


def _factor_arrays(state: dict[str, torch.Tensor], meta: dict, path) -> dict[str, np.ndarray]:
    """The factor models' arrays: from their own weights file (``meta["weights"]``, beside the VAE's, so
    refitting them leaves the VAE's weights file and its digest alone) or, in older checkpoints, from the
    ``factor_models.*`` tensors of the checkpoint's weights."""
    if meta.get("weights") is None:
        return {k.split(".", 1)[1]: v.cpu().numpy() for k, v in state.items() if k.startswith("factor_models.")}
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if path is None:
        raise ConfigError(path, "the factor models' weights file needs the checkpoint's directory")
    file = Path(path) / meta["weights"]
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as exc:
        raise ConfigError(file, f"cannot read the factor models' weights ({exc})") from exc


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
