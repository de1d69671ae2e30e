"""Classifiers qLST can explain: anything that scores a median beat differentiably.

A ``DifferentiableClassifier`` has ``labels`` (list of statement names) and
``__call__(beats_mv, context=None) -> probabilities (B, k)`` where ``beats_mv``
is a (B, 12, T_beat) tensor of median beats in mV on the VAE's grid and the
result is differentiable in the beats. ``identity`` (a JSON-ready dict) names
the classifier in checkpoints and explanations.

Adapters:

* ``BeatClassifierAdapter``: a model that reads median beats (the FactorECG
  black box, ``BeatClassifier``): ``sigmoid(model(beats))``.
* ``FactorECGAdapter``: the explainable FactorECG model (VAE encoder ->
  standardised factors -> logistic regressions), in torch.
* ``RecordClassifierAdapter``: a 10-s ``Classifier`` (baseline xresnet1d,
  ProtoECGNet, ...): the beat is re-synthesised into a record at the patient's
  R peaks (``resynth.resynthesize``; a regular rhythm when none are given),
  the classifier's preprocessing is applied in torch (``TorchPipeline``) and
  its network scores the record window by window.
* ``CallableAdapter``: your own model, in two lines::

      from ecglens.models.qlst import CallableAdapter
      adapter = CallableAdapter(lambda beats, context=None: torch.sigmoid(my_net(beats)), ["AFIB", "STD_"])

  ``my_net`` takes (B, 12, T_beat) mV beats and returns (B, 2) logits;
  anything built from torch operations is differentiable.

``adapter_for(classifier)`` picks the adapter of a loaded ``Classifier``.
``resynthesis_fidelity`` tells how far a record classifier's scores on
re-synthesised records can be trusted: it correlates, per statement, the scores
of the real records with those of records re-synthesised from their own median
beats.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from scipy import signal as sps
from torch import nn

from ...errors import ECGError
from ...preprocess import (
    Bandpass,
    FixLength,
    Highpass,
    Pipeline,
    Resample,
    Scale,
    Standardize,
    resample_signal,
)
from ..classifier import Classifier, windowed_probabilities
from .resynth import DEFAULT_BOUNDARY, RecordContext, regular_peaks, resynthesize


@runtime_checkable
class DifferentiableClassifier(Protocol):
    """Statement names and a differentiable map (B, 12, T_beat) mV beats -> (B, k) probabilities."""

    labels: list[str]

    def __call__(self, beats_mv: torch.Tensor, context: Any = None) -> torch.Tensor: ...


def _freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class _Adapter(nn.Module):
    """Shared parts: frozen, always in eval mode (dropout/batch norm off), ``identity``."""

    def __init__(self, labels, identity: dict | None):
        super().__init__()
        self.labels = [str(v) for v in labels]
        self.identity = dict(identity or {})

    def train(self, mode: bool = True):
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")


class BeatClassifierAdapter(_Adapter):
    """A median-beat model returning logits (e.g. ``BeatClassifier``) -> probabilities."""

    def __init__(self, model: nn.Module, labels, identity: dict | None = None):
        super().__init__(labels, identity)
        self.model = _freeze(model)

    def forward(self, beats_mv: torch.Tensor, context: Any = None) -> torch.Tensor:
        return torch.sigmoid(self.model(beats_mv))


class FactorECGAdapter(_Adapter):
    """The FactorECG model in torch: posterior mean -> standardised factors -> logistic regressions."""

    def __init__(self, classifier, identity: dict | None = None):
        super().__init__(classifier.labels, identity)
        fm, std = classifier.factor_models, classifier.standardizer
        if fm.config.kind != "logistic":
            raise ECGError(None, f"factor models of kind {fm.config.kind!r} are not differentiable; need 'logistic'")
        self.vae = _freeze(classifier.vae)
        self.register_buffer("index", torch.tensor(std.indices, dtype=torch.long))
        self.register_buffer("mean", torch.tensor(std.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std.std, dtype=torch.float32))
        coef = np.asarray(fm.coef, dtype=np.float32)
        intercept = np.asarray(fm.intercept, dtype=np.float32)
        const = np.full(len(fm.statements), np.nan, dtype=np.float32)
        for j, name in enumerate(fm.statements):
            if name in fm.single_class:
                const[j] = float(fm.single_class[name])
        self.register_buffer("coef", torch.from_numpy(coef))
        self.register_buffer("intercept", torch.from_numpy(intercept))
        self.register_buffer("constant", torch.from_numpy(const))

    def forward(self, beats_mv: torch.Tensor, context: Any = None) -> torch.Tensor:
        mu, _ = self.vae.encode(beats_mv)
        z = (mu.index_select(1, self.index) - self.mean) / self.std
        p = torch.sigmoid(z @ self.coef.T + self.intercept)
        fixed = torch.isfinite(self.constant)
        return torch.where(fixed, torch.nan_to_num(self.constant), p)


def _zero_phase_gain(sos: np.ndarray, n: int, rate: float) -> np.ndarray:
    """|H(f)|^2 of a digital filter on the rfft grid of n samples: the magnitude filtfilt applies."""
    freqs = np.fft.rfftfreq(n, d=1.0 / rate)
    _, h = sps.sosfreqz(sos, worN=freqs, fs=rate)
    return (np.abs(h) ** 2).astype(np.float32)


class TorchPipeline(nn.Module):
    """A ``Pipeline``'s steps in torch, differentiable, on (B, 12, n) signals already at ``rate``.

    ``Resample`` steps are skipped: the caller builds the record at the
    pipeline's output rate. High/band-pass filters become their zero-phase
    equivalent in the FFT domain (the squared magnitude response of the same
    Butterworth filter, which is what ``sosfiltfilt`` applies), on the signal
    extended at both ends by odd reflection (as ``filtfilt`` pads) so that the
    circular FFT does not wrap one end into the other; all filters run at the
    output rate. ``Standardize``, ``Scale`` and ``FixLength`` are exact.
    """

    def __init__(self, pipeline: Pipeline, rate: float, pad_s: float = 1.0):
        super().__init__()
        self.pipeline = pipeline
        self.rate = float(rate)
        self.pad = int(round(pad_s * rate))
        for step in pipeline.steps:
            if not isinstance(step, (Resample, Highpass, Bandpass, Standardize, Scale, FixLength)):
                raise ECGError(None, f"no torch equivalent for preprocessing step {step.name!r}")
        self._gains: dict[tuple[int, int], torch.Tensor] = {}

    def _filter(self, x: torch.Tensor, k: int, step) -> torch.Tensor:
        n = x.shape[-1]
        pad = min(self.pad, n - 1)
        if pad > 0:
            left = 2 * x[..., :1] - x[..., 1:pad + 1].flip(-1)
            right = 2 * x[..., -1:] - x[..., -pad - 1:-1].flip(-1)
            x = torch.cat([left, x, right], dim=-1)
        m = x.shape[-1]
        if (k, m) not in self._gains:
            if isinstance(step, Highpass):
                sos = sps.butter(step.order, step.cutoff, btype="highpass", fs=self.rate, output="sos")
            else:
                sos = sps.butter(step.order, (step.low, min(step.high, 0.45 * self.rate)), btype="bandpass",
                                 fs=self.rate, output="sos")
            self._gains[(k, m)] = torch.from_numpy(_zero_phase_gain(sos, m, self.rate))
        gain = self._gains[(k, m)].to(x.device, x.dtype)
        y = torch.fft.irfft(torch.fft.rfft(x, dim=-1) * gain, n=m, dim=-1)
        return y[..., pad:pad + n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, step in enumerate(self.pipeline.steps):
            if isinstance(step, Resample):
                continue
            if isinstance(step, (Highpass, Bandpass)):
                x = self._filter(x, k, step)
            elif isinstance(step, Standardize):
                mean = x.mean(dim=-1, keepdim=True)
                std = x.std(dim=-1, keepdim=True, unbiased=False)
                x = (x - mean) / std.clamp_min(step.eps)
            elif isinstance(step, Scale):
                mean = torch.tensor(step.mean, dtype=x.dtype, device=x.device)[:, None]
                std = torch.tensor(step.std, dtype=x.dtype, device=x.device)[:, None]
                x = (x - mean) / std
            else:
                target = int(round(step.seconds * self.rate))
                n = x.shape[-1]
                if n > target:
                    off = (n - target) // 2 if step.align == "center" else 0
                    x = x[..., off:off + target]
                elif n < target:
                    before = (target - n) // 2 if step.align == "center" else 0
                    x = nn.functional.pad(x, (before, target - n - before))
        return x


class RecordClassifierAdapter(_Adapter):
    """A record ``Classifier`` scoring re-synthesised records (see the module docstring).

    ``beat_rate``/``r_index``: the grid of the beats it receives (the VAE's);
    beats on another grid than the classifier's are linearly resampled.
    Without a ``RecordContext`` the record is ``n_samples`` long (default:
    the classifier's window) with a regular rhythm at ``heart_rate`` bpm.
    """

    def __init__(self, classifier: Classifier, beat_rate: float, r_index: int, n_samples: int | None = None,
                 heart_rate: float = 70.0, boundary: float = DEFAULT_BOUNDARY, identity: dict | None = None):
        super().__init__(classifier.labels, identity)
        self.model = _freeze(classifier.model)
        self.rate = float(classifier.sampling_rate)
        self.window, self.stride, self.aggregate = classifier.window, classifier.stride, classifier.aggregate
        self.batch_size = classifier.batch_size
        self.beat_rate = float(beat_rate)
        self.r_index = int(r_index)
        self.n_samples = int(n_samples or classifier.window)
        self.heart_rate = float(heart_rate)
        self.boundary = float(boundary)
        self.preprocess = TorchPipeline(classifier.pipeline, self.rate)

    def default_context(self, batch: int) -> RecordContext:
        """A regular rhythm at ``heart_rate`` over ``n_samples`` for every row."""
        return RecordContext(regular_peaks([60.0 / self.heart_rate] * batch, self.n_samples, self.rate),
                             self.n_samples)

    def record(self, beats_mv: torch.Tensor, context: RecordContext | None = None) -> torch.Tensor:
        """(B, 12, n) re-synthesised records in mV at the classifier's rate."""
        r_index = self.r_index
        if abs(self.beat_rate - self.rate) > 1e-9:
            size = int(round(beats_mv.shape[-1] * self.rate / self.beat_rate))
            beats_mv = nn.functional.interpolate(beats_mv, size=size, mode="linear", align_corners=False)
            r_index = int(round(self.r_index * self.rate / self.beat_rate))
        ctx = context or self.default_context(len(beats_mv))
        peaks = ctx.r_peaks
        if len(peaks) == 1 and len(beats_mv) > 1:
            peaks = peaks[0]
        return resynthesize(beats_mv, peaks, ctx.n_samples, r_index, boundary=self.boundary)

    def forward(self, beats_mv: torch.Tensor, context: RecordContext | None = None) -> torch.Tensor:
        x = self.preprocess(self.record(beats_mv, context))
        return windowed_probabilities(self.model, x, self.window, self.stride, self.aggregate, self.batch_size)


class CallableAdapter(_Adapter):
    """Any function ``fn(beats_mv, context=None) -> (B, k) probabilities`` with its ``labels``."""

    def __init__(self, fn: Callable[..., torch.Tensor], labels, identity: dict | None = None):
        super().__init__(labels, identity or {"kind": "callable", "name": getattr(fn, "__name__", type(fn).__name__)})
        self.fn = fn
        if isinstance(fn, nn.Module):
            _freeze(fn)

    def forward(self, beats_mv: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.fn(beats_mv, context)


def adapter_for(classifier: Classifier, beat_rate: float, r_index: int, identity: dict | None = None) -> _Adapter:
    """The adapter of a loaded ``Classifier``: beat models are scored on the beat, record models via re-synthesis."""
    from ..factorecg.blackbox import BeatClassifier
    from ..factorecg.classifier import BeatModelClassifier, FactorECGClassifier

    ident = identity or {"kind": classifier.config.get("kind")}
    if isinstance(classifier, FactorECGClassifier):
        return FactorECGAdapter(classifier, ident)
    if isinstance(classifier, BeatModelClassifier):
        if not isinstance(classifier.model, BeatClassifier):
            raise ECGError(None, f"beat model {type(classifier.model).__name__} has no differentiable adapter")
        return BeatClassifierAdapter(classifier.model, classifier.labels, ident)
    return RecordClassifierAdapter(classifier, beat_rate, r_index, identity=ident)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def resynthesis_fidelity(classifier, records, before: float = 0.4, after: float = 0.8) -> dict:
    """How well a record classifier's scores survive re-synthesis, per statement.

    ``classifier``: a loaded ``Classifier``; ``records``: ``ECG`` objects. Each
    record is resampled to the classifier's rate, its median beat taken
    (``ecg_medianbeat``, ``before``/``after`` s around R) and re-synthesised at
    its own R peaks; the classifier scores both the real record
    (``predict_ecgs``) and the re-synthesis (through ``RecordClassifierAdapter``,
    the path qLST uses). Returns ``correlation`` (statement -> Pearson r across
    records, None when fewer than 3 records or a constant score), the mean
    absolute score difference per statement, both score arrays, ``n_records``
    and ``skipped`` ((source, reason) for records without a usable beat).
    """
    from ...beats import ecg_medianbeat
    from ..factorecg.classifier import BeatModelClassifier

    if isinstance(classifier, BeatModelClassifier):
        raise ECGError(None, "this classifier scores the median beat itself; re-synthesis does not apply to it")
    rate = classifier.sampling_rate
    real, synth, skipped = [], [], []
    adapter = None
    for k, ecg in enumerate(records):
        source = ecg.source or f"record {k}"
        x = resample_signal(ecg.signal, ecg.sampling_rate, rate)
        try:
            beat, info = ecg_medianbeat(x, rate, before=before, after=after, source=source)
            real.append(classifier.predict_ecgs([ecg])[0])
        except ECGError as exc:
            skipped.append((source, str(exc)))
            continue
        if adapter is None:
            adapter = RecordClassifierAdapter(classifier, beat_rate=rate, r_index=info["r_index"])
        context = RecordContext(torch.as_tensor(info["r_peaks"], dtype=torch.long)[None], x.shape[-1])
        with torch.no_grad():
            synth.append(adapter(torch.from_numpy(beat.astype(np.float32))[None].to(adapter.device), context)[0]
                         .cpu().numpy())
    real_a = np.asarray(real, dtype=np.float64).reshape(len(real), len(classifier.labels))
    synth_a = np.asarray(synth, dtype=np.float64).reshape(len(synth), len(classifier.labels))
    corr = {name: _pearson(real_a[:, j], synth_a[:, j]) for j, name in enumerate(classifier.labels)}
    mad = {name: float(np.mean(np.abs(real_a[:, j] - synth_a[:, j]))) if len(real_a) else None
           for j, name in enumerate(classifier.labels)}
    return {"correlation": corr, "mean_abs_difference": mad, "real": real_a, "resynthesized": synth_a,
            "n_records": len(real_a), "skipped": skipped}
