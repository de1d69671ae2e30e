"""Median beats for FactorECG: one 12-lead median beat per record, cached per beat setting.

Beats follow the resolution study (``bench/results/beat_resolution.md``): the
beats are cut and aligned on the ``extract_rate`` grid (500 Hz: R peaks to
2 ms), and the median beat is then taken to the VAE grid (``beat_rate``,
100 Hz: 120 samples per 1.2-s beat; 500 Hz is an option). Records are
processed in batches (``ecg_factorbeat_batch``), vectorised over records. Every record of the
requested folds goes through ``SignalCache``; records whose beat cannot be
extracted (``ECGError``: flat, too few beats, ...) are counted and listed in
``skipped``, never silently dropped.

Each cached row is (13, beat_samples): the 12 leads of the median beat and one
row of beat facts (``FACT_NAMES``: median RR in s, beats found, beats kept,
then zeros), so heart rate and QTc can be measured later without re-extracting.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np

from ...beats import ecg_medianbeat_batch
from ...datasets.cache import SignalCache
from ...errors import ECGError
from ...io import read_ecg
from ...io.leads import STANDARD_LEADS
from ...io.record import ECG

FACT_NAMES = ("rr_s", "beats_found", "beats_kept")


@dataclass(frozen=True)
class BeatSettings:
    """How a record becomes the VAE's median beat (stored with every checkpoint)."""

    beat_rate: float = 100.0
    extract_rate: float = 500.0
    before: float = 0.4
    after: float = 0.8
    corr_threshold: float = 0.8
    min_beats: int = 3

    def __post_init__(self):
        if not (self.beat_rate > 0 and self.extract_rate > 0 and self.before > 0 and self.after > 0):
            raise ECGError(None, f"beat settings need positive rates and window: {self}")

    @property
    def beat_samples(self) -> int:
        """Samples per beat on the VAE grid."""
        return int(round(self.before * self.beat_rate)) + int(round(self.after * self.beat_rate))

    @property
    def r_index(self) -> int:
        """The R peak's sample on the VAE grid."""
        return int(round(self.before * self.beat_rate))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BeatSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ECGError(None, f"unknown beat setting(s) {unknown}")
        return cls(**d)


def ecg_factorbeat_batch(signals: np.ndarray, sampling_rate: float, settings: BeatSettings = BeatSettings(),
                         sources=None) -> tuple[np.ndarray, list]:
    """FactorECG median beats (n, 12, beat_samples) in mV of a (n, 12, t) batch at any rate, vectorised over records.

    The beats are cut and aligned on the ``settings.extract_rate`` grid and
    the median beats taken to ``beat_rate`` (``ecg_medianbeat_batch`` with
    ``align_rate``: QRS detection stays at the record's rate when
    extract_rate is a multiple of it). Returns ``(beats, infos)``: rows
    of records without a beat are NaN and their info is the ``ECGError``
    naming ``sources[i]``.
    """
    x = np.asarray(signals, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] != len(STANDARD_LEADS):
        raise ECGError(None, f"expected signals shaped (records, 12, samples) in standard lead order, got {x.shape}")
    beats, infos = ecg_medianbeat_batch(x, sampling_rate, before=settings.before, after=settings.after,
                                        min_beats=settings.min_beats, corr_threshold=settings.corr_threshold,
                                        align_rate=settings.extract_rate, out_rate=settings.beat_rate, sources=sources)
    if beats.shape[-1] != settings.beat_samples:
        raise ECGError(None, f"median beats have {beats.shape[-1]} samples, expected {settings.beat_samples}")
    return beats, infos


def ecg_factorbeat(signal: np.ndarray, sampling_rate: float, settings: BeatSettings = BeatSettings(),
                   source: str | None = None) -> tuple[np.ndarray, dict]:
    """The FactorECG median beat (12, beat_samples) in mV of a (12, n) record at any rate, and its info."""
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(STANDARD_LEADS):
        raise ECGError(source, f"expected a (12, samples) signal in standard lead order, got shape {x.shape}")
    beats, infos = ecg_factorbeat_batch(x[None], sampling_rate, settings, sources=[source])
    if isinstance(infos[0], ECGError):
        raise infos[0]
    return beats[0], infos[0]


def record_beat(ecg: ECG, settings: BeatSettings = BeatSettings()) -> tuple[np.ndarray, dict]:
    """``ecg_factorbeat`` of an ``ECG`` record (errors name its source)."""
    if tuple(ecg.leads) != STANDARD_LEADS:
        raise ECGError(ecg.source or None, f"expected the 12 standard leads in order, got {list(ecg.leads)}")
    return ecg_factorbeat(ecg.signal, ecg.sampling_rate, settings, source=ecg.source or None)


def beat_row(median: np.ndarray, info: dict) -> np.ndarray:
    """A cache row (13, m): the beat plus the beat-facts row."""
    facts = np.zeros(median.shape[-1], dtype=np.float32)
    rr = info["rr"]
    facts[:3] = [float(np.median(rr)) if len(rr) else np.nan, info["beats_found"], info["beats_kept"]]
    return np.concatenate([median, facts[None]], axis=0)


@dataclass
class BeatSplit:
    """Median beats of some PTB-XL records with labels.

    ``beats`` (n, 12, m) mV and ``facts`` (n, len(FACT_NAMES)) are in-memory
    arrays; ``y`` (n, k) follows ``label_names`` (empty when no label set was
    asked for). ``skipped`` lists ``(ecg_id, reason)`` for records without a
    usable beat; ``dropped`` the records without a label of the set.
    """

    ecg_ids: np.ndarray
    beats: np.ndarray
    facts: np.ndarray
    y: np.ndarray
    label_names: list[str]
    skipped: list[tuple[int, str]]
    dropped: list[int]

    @property
    def rr(self) -> np.ndarray:
        return self.facts[:, FACT_NAMES.index("rr_s")]


def load_beats(ds, folds: Sequence[int], settings: BeatSettings = BeatSettings(), label_set: str | None = None,
               cache_dir: str | os.PathLike | None = None, max_records: int | None = None,
               progress: bool = True) -> BeatSplit:
    """Median beats of the records of ``folds`` of a ``PTBXL`` set, through the memory-mapped cache.

    The cache holds every record of the folds (so label sets share it), keyed by
    the data identity, the source rate and the beat settings. ``max_records``
    keeps the first N records of the folds (tests). With ``label_set`` only the
    records that have a label of the set are returned, with ``y``.
    """
    folds = tuple(int(f) for f in folds)
    rows = ds.records[ds.records["fold"].isin(folds)]
    ids = [int(i) for i in rows.index]
    if max_records is not None:
        ids = ids[:int(max_records)]
    if not ids:
        raise ECGError(ds.root, f"no records in folds {folds}")
    key_parts = {"dataset": "ptb-xl", "what": "factorecg-median-beat", "identity": ds.identity(),
                 "source_rate": ds.sampling_rate, "beat": settings.to_dict()}

    def load_fn(ecg_id: int) -> np.ndarray:
        path = ds.header_path(ecg_id)
        ecg = read_ecg(path, sampling_rate=ds.sampling_rate)
        return beat_row(*ecg_factorbeat(ecg.signal, ecg.sampling_rate, settings, source=str(path)))

    cached, kept_ids, skipped = SignalCache(cache_dir).get_or_build(
        key_parts, ids, load_fn, progress=progress, describe=lambda i: str(ds.header_path(i)),
        sources=ds.record_files)
    kept_ids = np.asarray(kept_ids, dtype=np.int64)
    data = np.asarray(cached, dtype=np.float32)
    beats, facts = np.ascontiguousarray(data[:, :12]), np.ascontiguousarray(data[:, 12, :len(FACT_NAMES)])
    skipped = [(int(i), str(r)) for i, r in skipped]
    if label_set is None:
        return BeatSplit(kept_ids, beats, facts, np.zeros((len(kept_ids), 0), np.float32), [], skipped, [])
    table = ds.labels(label_set, folds)
    pos = {int(i): k for k, i in enumerate(table.ecg_ids)}
    keep = np.array([int(i) in pos for i in kept_ids], dtype=bool)
    y = table.y[[pos[int(i)] for i in kept_ids[keep]]] if keep.any() else np.zeros((0, len(table.names)), np.float32)
    dropped = [int(i) for i in kept_ids[~keep]]
    return BeatSplit(kept_ids[keep], beats[keep], facts[keep], y, list(table.names), skipped, dropped)
