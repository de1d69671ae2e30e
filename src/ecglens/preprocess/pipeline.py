"""Preprocessing steps and the pipeline that chains them.

Every step is a frozen dataclass with ``apply(signal, sampling_rate) -> (signal,
sampling_rate)`` on float32 (leads x samples) arrays, or on a stack of them (..., leads,
samples) at once: ``Pipeline.apply_many`` stacks records of one rate and length, so a
batch costs a few array operations instead of one Python pass per record. A pipeline
serialises to a plain dict (``to_dict``/``from_dict``) whose SHA-256 ``fingerprint`` keys caches,
so a changed pipeline never reads a stale cache.
"""
from __future__ import annotations

import functools
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import ECGError
from ..io.record import ECG


def resample_signal(signal: np.ndarray, sampling_rate: float, target_rate: float) -> np.ndarray:
    """Polyphase resampling with an anti-aliasing FIR (scipy ``resample_poly``)."""
    if float(sampling_rate) == float(target_rate):
        return np.asarray(signal, dtype=np.float32)
    ratio = Fraction(float(target_rate) / float(sampling_rate)).limit_denominator(1000)
    from scipy import signal as sps  # imported when used: scipy.signal costs ~0.9 s to import

    out = sps.resample_poly(np.asarray(signal, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


class Step(ABC):
    """Base of all steps: ``name`` identifies the type in the serialised form."""

    name: ClassVar[str] = ""

    @abstractmethod
    def apply(self, signal: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, float]:
        """Transform a (..., leads, samples) float32 signal; return it with its new rate."""

    def to_dict(self) -> dict:
        d = {"step": self.name}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d


@dataclass(frozen=True)
class Resample(Step):
    """Resample to ``target_rate`` Hz with anti-aliasing."""

    target_rate: float
    name: ClassVar[str] = "resample"

    def apply(self, signal, sampling_rate):
        return resample_signal(signal, sampling_rate, self.target_rate), float(self.target_rate)


def _butter_sos(kind: str, cutoff, sampling_rate: float, order: int, source: str = "") -> np.ndarray:
    nyq = sampling_rate / 2.0
    edges = np.atleast_1d(np.asarray(cutoff, dtype=float))
    if np.any(edges <= 0) or np.any(edges >= nyq):
        raise ECGError(source or None, f"filter cutoff {list(edges)} Hz outside (0, {nyq}) for {sampling_rate} Hz")
    key = float(edges[0]) if np.ndim(cutoff) == 0 else tuple(float(e) for e in edges)
    return _designed_sos(kind, key, float(sampling_rate), int(order)).copy()  # scipy wants it writable


@functools.lru_cache(maxsize=64)
def _designed_sos(kind: str, cutoff: float | tuple[float, ...], sampling_rate: float, order: int) -> np.ndarray:
    # Designing the filter costs more than running it on a 10-s record: design each one once.
    from scipy import signal as sps

    return sps.butter(order, cutoff, btype=kind, fs=sampling_rate, output="sos")


FILTER_BLOCK_VALUES = 1 << 17  # samples filtered together (1 MiB of float64): each block's copies stay in cache


def sosfiltfilt_last(sos: np.ndarray, x: np.ndarray, padlen: int, dtype=np.float64,
                     zero_below: float = 0.0) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x, axis=-1, padlen=padlen)`` of a float64 copy of ``x`` (..., n), returned
    as ``dtype``, with values under ``zero_below`` in size set to 0: the same values in fewer, cache-sized
    passes. Blocks of rows are filtered in turn; per block the odd extension is built straight from ``x``, the
    backward pass reads the reversed forward output as ``sosfilt`` copies it, and the result is cast once into
    the output. ``padlen`` must be below n."""
    from scipy import signal as sps  # imported when used: scipy.signal costs ~0.9 s to import

    n = x.shape[-1]
    if not 0 <= padlen < n:
        raise ValueError(f"padlen {padlen} must be at least 0 and below the signal length {n}")
    rows = x.reshape(-1, n)
    out = np.empty(rows.shape, dtype=dtype)
    zi = sps.sosfilt_zi(sos)[:, None, :]  # (sections, 1, 2): scaled by each row's first sample
    step = max(1, FILTER_BLOCK_VALUES // (n + 2 * padlen))
    for r in range(0, len(rows), step):
        block = rows[r:r + step]
        ext = np.empty((len(block), n + 2 * padlen))
        mid = ext[:, padlen:padlen + n]
        mid[...] = block
        ext[:, :padlen] = 2 * mid[:, :1] - mid[:, padlen:0:-1]
        ext[:, padlen + n:] = 2 * mid[:, -1:] - mid[:, -2:-padlen - 2:-1]
        y, _ = sps.sosfilt(sos, ext, axis=-1, zi=zi * ext[None, :, :1])
        y, _ = sps.sosfilt(sos, y[:, ::-1], axis=-1, zi=zi * y[None, :, -1:])
        done = out[r:r + step]
        done[...] = y[:, n + padlen - 1:padlen - 1 if padlen else None:-1]
        if zero_below > 0:
            done[np.abs(done) < zero_below] = 0
    return out.reshape(x.shape)


def _zero_phase(sos: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Zero-phase filtering along the last axis of (..., samples), float32: ``sosfiltfilt`` for a whole batch."""
    # sosfiltfilt needs a signal longer than its padding; shorter ones pad less.
    padlen = min(3 * (2 * len(sos) + 1), signal.shape[-1] - 1)
    return sosfiltfilt_last(sos, signal, max(padlen, 0), np.float32)


@dataclass(frozen=True)
class Highpass(Step):
    """Zero-phase Butterworth high-pass (baseline wander removal)."""

    cutoff: float = 0.5
    order: int = 2
    name: ClassVar[str] = "highpass"

    def apply(self, signal, sampling_rate):
        return _zero_phase(_butter_sos("highpass", self.cutoff, sampling_rate, self.order), signal), sampling_rate


@dataclass(frozen=True)
class Bandpass(Step):
    """Zero-phase Butterworth band-pass; ``high`` is clipped below Nyquist."""

    low: float = 0.5
    high: float = 40.0
    order: int = 2
    name: ClassVar[str] = "bandpass"

    def apply(self, signal, sampling_rate):
        high = min(self.high, 0.45 * sampling_rate)
        return _zero_phase(_butter_sos("bandpass", (self.low, high), sampling_rate, self.order), signal), sampling_rate


@dataclass(frozen=True)
class Standardize(Step):
    """Per-record, per-lead z-score (flat leads are left at zero)."""

    eps: float = 1e-6
    name: ClassVar[str] = "standardize"

    def apply(self, signal, sampling_rate):
        mean = signal.mean(axis=-1, keepdims=True)
        std = signal.std(axis=-1, keepdims=True)
        out = signal - mean
        out /= np.maximum(std, self.eps)
        return out.astype(np.float32, copy=False), sampling_rate


@dataclass(frozen=True)
class Scale(Step):
    """Fixed per-lead affine scaling ``(x - mean) / std``, fitted once on a training set."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: ClassVar[str] = "scale"

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def fit(cls, signals, eps: float = 1e-6) -> "Scale":
        """Per-lead mean and std over an iterable of (leads x samples) arrays, in float64, streaming."""
        n = 0
        s1 = s2 = None
        for x in signals:
            x = np.asarray(x, dtype=np.float64)
            s1 = x.sum(axis=-1) if s1 is None else s1 + x.sum(axis=-1)
            s2 = (x * x).sum(axis=-1) if s2 is None else s2 + (x * x).sum(axis=-1)
            n += x.shape[-1]
        if not n:
            raise ECGError(None, "Scale.fit needs at least one signal")
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
        return cls(tuple(mean), tuple(np.maximum(std, eps)))

    def apply(self, signal, sampling_rate):
        mean = np.asarray(self.mean, dtype=np.float32)[:, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None]
        out = signal - mean  # a new array: divided in place, cast only if not float32 already
        out /= std
        return out.astype(np.float32, copy=False), sampling_rate


@dataclass(frozen=True)
class FixLength(Step):
    """Crop or zero-pad to exactly ``seconds`` (at the current rate).

    ``align='center'`` crops/pads symmetrically, ``'start'`` keeps the beginning.
    """

    seconds: float
    align: str = "start"
    name: ClassVar[str] = "fix_length"

    def __post_init__(self):
        if self.align not in ("start", "center"):
            raise ECGError(None, f"FixLength align must be 'start' or 'center', got {self.align!r}")

    def apply(self, signal, sampling_rate):
        target = int(round(self.seconds * sampling_rate))
        n = signal.shape[-1]
        if n > target:
            off = (n - target) // 2 if self.align == "center" else 0
            return np.ascontiguousarray(signal[..., off:off + target]), sampling_rate
        if n < target:
            before = (target - n) // 2 if self.align == "center" else 0
            widths = [(0, 0)] * (signal.ndim - 1) + [(before, target - n - before)]
            return np.pad(signal, widths).astype(np.float32), sampling_rate
        return signal, sampling_rate


STEP_TYPES: dict[str, type[Step]] = {cls.name: cls for cls in (Resample, Highpass, Bandpass, Standardize, Scale, FixLength)}


@dataclass(frozen=True)
class Pipeline:
    """An ordered chain of steps; serialisable, hashable, applied to any record."""

    steps: tuple[Step, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))

    @property
    def output_rate(self) -> float | None:
        """The rate the pipeline ends at, if it resamples."""
        rates = [s.target_rate for s in self.steps if isinstance(s, Resample)]
        return float(rates[-1]) if rates else None

    def apply_signal(self, signal: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, float]:
        x = np.asarray(signal, dtype=np.float32)
        rate = float(sampling_rate)
        for step in self.steps:
            x, rate = step.apply(x, rate)
        return x, rate

    def apply_many(self, signals: list[np.ndarray], rates: list[float]) -> list[tuple[np.ndarray, float]]:
        """``apply_signal`` of every (leads, samples) signal; those of one rate and shape go through together."""
        groups: dict[tuple, list[int]] = {}
        for i, (x, rate) in enumerate(zip(signals, rates)):
            groups.setdefault((float(rate), np.shape(x)), []).append(i)
        out: list = [None] * len(signals)
        for (rate, _), idx in groups.items():
            x, new_rate = self.apply_signal(np.stack([signals[i] for i in idx]), rate)
            for j, i in enumerate(idx):
                out[i] = (x[j], new_rate)
        return out

    def apply(self, ecg: ECG) -> ECG:
        x, rate = self.apply_signal(ecg.signal, ecg.sampling_rate)
        units = "a.u." if any(isinstance(s, (Standardize, Scale)) for s in self.steps) else ecg.units
        return ecg.with_signal(x, rate, units=units)

    def then(self, *steps: Step) -> "Pipeline":
        return Pipeline(self.steps + tuple(steps))

    def to_dict(self) -> dict:
        return {"steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict) -> "Pipeline":
        steps = []
        for spec in d.get("steps", []):
            spec = dict(spec)
            kind = spec.pop("step", None)
            if kind not in STEP_TYPES:
                raise ECGError(None, f"unknown preprocessing step {kind!r}; known: {sorted(STEP_TYPES)}")
            steps.append(STEP_TYPES[kind](**spec))
        return cls(tuple(steps))

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form (cache key)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()
