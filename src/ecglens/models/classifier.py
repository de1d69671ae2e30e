"""The one interface every trained model offers to predict, evaluate, explain and qLST.

A :class:`Classifier` wraps a network that maps (n, 12, window) preprocessed
signals to (n, k) logits, with the pipeline and window settings it was trained
with. Records longer than the window are scored by sliding windows whose
probabilities are aggregated (max or mean); shorter ones are zero-padded at the
end (zero is the mean of a standardised signal). With "max" each statement's
probability is that of one window, the one with the highest logit
(``Classifier.deciding_windows`` names it).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ECGError
from ..calibration import Calibration
from ..io.record import ECG
from ..preprocess import Pipeline
from ..training.distributed import default_device

AGGREGATES = ("max", "mean")
DEFAULT_THRESHOLD = 0.5  # the call threshold of a statement the checkpoint stores none for


def window_starts(n_samples: int, window: int, stride: int) -> np.ndarray:
    """Start indices of sliding windows over ``n_samples``.

    Windows step by ``stride`` from 0; when the last one stops short of the
    end, one more window is aligned to the end so every sample is seen. A
    record no longer than the window gets the single start 0.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n_samples - window + 1, stride))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return np.asarray(starts, dtype=np.int64)


def make_windows(signals: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """(n, c, t) -> (n, w, c, window): sliding windows, or the zero-padded record when t < window."""
    n, c, t = signals.shape
    if t < window:
        signals = nn.functional.pad(signals, (0, window - t))
        t = window
    starts = window_starts(t, window, stride)
    return torch.stack([signals[:, :, s:s + window] for s in starts], dim=1)


def windowed_logits(model: nn.Module, signals: torch.Tensor, window: int, stride: int,
                    batch_size: int = 256) -> torch.Tensor:
    """(n, c, t) signals -> (n, w, k): every window's logits (windows as ``make_windows``)."""
    windows = make_windows(signals, window, stride)
    n, w = windows.shape[:2]
    flat = windows.reshape(n * w, *windows.shape[2:])
    return torch.cat([model(flat[i:i + batch_size]) for i in range(0, n * w, batch_size)]).reshape(n, w, -1)


def windowed_probabilities(model: nn.Module, signals: torch.Tensor, window: int, stride: int,
                           aggregate: str = "max", batch_size: int = 256) -> torch.Tensor:
    """(n, c, t) signals -> (n, k) probabilities: sigmoid of each window's logits, aggregated per record."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    probs = torch.sigmoid(windowed_logits(model, signals, window, stride, batch_size))
    return probs.amax(dim=1) if aggregate == "max" else probs.mean(dim=1)


def deciding_windows(logits: torch.Tensor) -> torch.Tensor:
    """(..., w, k) window logits -> (..., k): the window whose logit is highest (the first on ties),
    i.e. the window a max-aggregated probability comes from."""
    return logits.argmax(dim=-2)


class Classifier:
    """A trained multi-label ECG classifier, ready for any record at any rate.

    ``labels[j]`` names output ``j``; ``pipeline`` turns a raw record into the
    model's input (it ends at ``sampling_rate``); ``window_s``/``stride_s``/
    ``aggregate`` set the sliding-window scoring. ``config`` is the checkpoint's
    full configuration (for provenance). ``device`` defaults to CUDA when available.
    ``calibration`` (from ``config["calibration"]``, see ``ecglens.calibration``)
    maps the network's probabilities to calibrated ones in every ``predict_*``
    method and supplies ``thresholds`` (k,) and the ``assessable`` mask; without
    it the probabilities are the network's own, every threshold is
    ``DEFAULT_THRESHOLD`` and every statement is assessable. Invalid settings
    raise ``ConfigError`` naming ``source`` (the checkpoint).
    """

    def __init__(self, model: nn.Module, labels: list[str], pipeline: Pipeline, sampling_rate: float,
                 window_s: float, stride_s: float | None = None, aggregate: str = "max",
                 config: dict[str, Any] | None = None, device: str | torch.device | None = None,
                 batch_size: int = 256, source=None):
        stride_s = stride_s if stride_s is not None else window_s
        if aggregate not in AGGREGATES:
            raise ConfigError(source, f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        for name, value in (("sampling_rate", sampling_rate), ("window_s", window_s), ("stride_s", stride_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(source, f"{name} must be a positive finite number, got {value!r}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.labels = [str(v) for v in labels]
        self.pipeline = pipeline
        self.sampling_rate = float(sampling_rate)
        self.window_s = float(window_s)
        self.stride_s = float(stride_s)
        self.aggregate = aggregate
        self.config = dict(config or {})
        self.batch_size = int(batch_size)
        self.calibration = None
        if self.config.get("calibration") is not None:
            self.calibration = Calibration.from_dict(self.config["calibration"], source)
            if self.calibration.labels != self.labels:
                raise ConfigError(source, "the calibration covers other statements than the model's labels")
        if pipeline.output_rate is not None and pipeline.output_rate != self.sampling_rate:
            raise ConfigError(source, f"pipeline ends at {pipeline.output_rate} Hz but the model expects {self.sampling_rate} Hz")

    @property
    def thresholds(self) -> np.ndarray:
        """(k,) operating thresholds on the (calibrated) probabilities."""
        if self.calibration is None:
            return np.full(len(self.labels), DEFAULT_THRESHOLD)
        return self.calibration.thresholds

    @property
    def assessable(self) -> np.ndarray:
        """(k,) booleans: statements the model may call (see ``ecglens.calibration``)."""
        if self.calibration is None:
            return np.ones(len(self.labels), dtype=bool)
        return self.calibration.assessable

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """The calibrated probabilities of raw network probabilities (unchanged without a calibration)."""
        return probs if self.calibration is None else self.calibration.apply(probs)

    @contextmanager
    def raw(self):
        """Within the block every ``predict_*`` returns the network's uncalibrated probabilities."""
        calibration, self.calibration = self.calibration, None
        try:
            yield self
        finally:
            self.calibration = calibration

    @property
    def window(self) -> int:
        """Window length in samples."""
        return int(round(self.window_s * self.sampling_rate))

    @property
    def stride(self) -> int:
        return max(1, int(round(self.stride_s * self.sampling_rate)))

    def preprocess(self, ecg: ECG) -> np.ndarray:
        """The model input for one record: the stored pipeline applied, (12, samples) at ``sampling_rate``.

        The model takes ``ecg.standard12()``: missing limb leads are derived, other missing leads are an
        ECGError naming them.
        """
        return self._checked_input(ecg, *self.pipeline.apply_signal(ecg.standard12().signal, ecg.sampling_rate))

    @property
    def batches_preprocessing(self) -> bool:
        """Whether ``preprocess_many`` runs records through the pipeline together; a subclass with a
        ``preprocess`` of its own (e.g. median beats) is served record by record."""
        return type(self).preprocess is Classifier.preprocess

    def preprocess_many(self, ecgs: list[ECG]) -> list[np.ndarray]:
        """``preprocess`` of every record; records of one rate and length go through the pipeline together
        (``batches_preprocessing``)."""
        if not self.batches_preprocessing:
            return [self.preprocess(ecg) for ecg in ecgs]
        ecgs = [ecg.standard12() for ecg in ecgs]
        outs = self.pipeline.apply_many([e.signal for e in ecgs], [e.sampling_rate for e in ecgs])
        return [self._checked_input(ecg, x, rate) for ecg, (x, rate) in zip(ecgs, outs)]

    def _checked_input(self, ecg: ECG, x: np.ndarray, rate: float) -> np.ndarray:
        if abs(rate - self.sampling_rate) > 1e-6:
            raise ECGError(ecg.source or None, f"record is at {rate} Hz after preprocessing; the model needs "
                                               f"{self.sampling_rate} Hz (the pipeline has no resampling step)")
        if not np.isfinite(x).all():
            raise ECGError(ecg.source or None, "signal holds NaN or infinite values after preprocessing")
        return x

    def predict_proba(self, ecg: ECG) -> np.ndarray:
        """(k,) probabilities for one record (any rate; the pipeline adapts it)."""
        return self.predict_batch(self.preprocess(ecg)[None], self.sampling_rate)[0]

    def predict_batch(self, signals: np.ndarray, sampling_rate: float) -> np.ndarray:
        """(n, k) probabilities for (n, 12, t) signals that the pipeline has already preprocessed."""
        if abs(float(sampling_rate) - self.sampling_rate) > 1e-6:
            raise ECGError(None, f"signals at {sampling_rate} Hz; this model takes {self.sampling_rate} Hz "
                                 "(apply its pipeline first)")
        x = np.array(signals, dtype=np.float32)  # a writable copy: inputs are often read-only memory maps
        if x.ndim != 3 or x.shape[1] != 12:
            raise ECGError(None, f"expected signals shaped (n, 12, samples), got {x.shape}")
        with torch.inference_mode():
            probs = windowed_probabilities(self.model, torch.from_numpy(np.ascontiguousarray(x)).to(self.device),
                                           self.window, self.stride, self.aggregate, self.batch_size)
        return self.calibrate(probs.cpu().numpy().astype(np.float64))

    def deciding_windows(self, x: np.ndarray) -> np.ndarray:
        """(k, 2) start and stop, in seconds of the preprocessed record ``x`` (12, t), of the window each
        statement's probability comes from (the one with the highest logit; stop is clipped to the record).
        Only a max-aggregating classifier has one window per statement (ConfigError otherwise)."""
        if self.aggregate != "max":
            raise ConfigError(None, f"a {self.aggregate!r}-aggregating classifier has no deciding window")
        x = np.array(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != 12:
            raise ECGError(None, f"expected one preprocessed record shaped (12, samples), got {x.shape}")
        with torch.inference_mode():
            logits = windowed_logits(self.model, torch.from_numpy(x[None]).to(self.device), self.window,
                                     self.stride, self.batch_size)[0]
        starts = window_starts(max(x.shape[-1], self.window), self.window, self.stride)
        start = starts[deciding_windows(logits).cpu().numpy()]
        stop = np.minimum(start + self.window, x.shape[-1])
        return np.stack([start, stop], axis=1) / self.sampling_rate

    def predict_ecgs(self, ecgs: list[ECG]) -> np.ndarray:
        """(n, k) probabilities for records of any rates and lengths."""
        return self.predict_inputs(self.preprocess_many(ecgs))

    def predict_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        """(n, k) probabilities for preprocessed (12, t) inputs of any lengths (batched by length)."""
        out = np.empty((len(inputs), len(self.labels)), dtype=np.float64)
        by_length: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            by_length.setdefault(x.shape[-1], []).append(i)
        for idx in by_length.values():
            out[idx] = self.predict_batch(np.stack([inputs[i] for i in idx]), self.sampling_rate)
        return out

    def __repr__(self) -> str:
        return (f"Classifier(kind={self.config.get('kind')!r}, labels={len(self.labels)}, "
                f"rate={self.sampling_rate:g} Hz, window={self.window_s:g} s, stride={self.stride_s:g} s, "
                f"aggregate={self.aggregate!r})")
