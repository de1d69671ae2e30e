"""Median beats for FactorECG: one 12-lead median beat per record, cached per beat setting.

Beats follow the resolution study (``bench/results/beat_resolution.md``): the
beats are aligned to R peaks on the ``extract_rate`` grid (500 Hz: R peaks to
2 ms), and the median beat is then taken to the VAE grid (``beat_rate``,
100 Hz: 120 samples per 1.2-s beat; 500 Hz is an option). With ``subsample``
(the default since the fast beats, ``bench/results/beats_speed.md``) the beats
are cut on the record's own grid and only each beat window is interpolated to
its R position; without it (checkpoints trained before) the whole record is
interpolated to ``extract_rate`` first and the beats are cut there. Records are
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
from ...beats.rhythm import RHYTHM_FEATURES, ecg_rhythm, rhythm_vector
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
    subsample: bool = True

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
        """Settings from their dict; one stored before ``subsample`` existed cut on the extract_rate grid."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ECGError(None, f"unknown beat setting(s) {unknown}")
        return cls(**{"subsample": False, **d})


def ecg_factorbeat_batch(signals: np.ndarray, sampling_rate: float, settings: BeatSettings = BeatSettings(),
                         sources=None, keep_beats: bool = False) -> tuple[np.ndarray, list]:
    """FactorECG median beats (n, 12, beat_samples) in mV of a (n, 12, t) batch at any rate, vectorised over records.

    The beats are aligned on the ``settings.extract_rate`` grid (cut on the
    record's grid with ``settings.subsample``) and the median beats taken to
    ``beat_rate`` (``ecg_medianbeat_batch`` with ``align_rate``: QRS detection
    stays at the record's rate when extract_rate is a multiple of it). Returns ``(beats, infos)``: rows
    of records without a beat are NaN and their info is the ``ECGError``
    naming ``sources[i]``; ``keep_beats`` adds each record's kept beats
    (``info["beats"]``, on the beat grid).
    """
    x = np.asarray(signals, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] != len(STANDARD_LEADS):
        raise ECGError(None, f"expected signals shaped (records, 12, samples) in standard lead order, got {x.shape}")
    beats, infos = ecg_medianbeat_batch(x, sampling_rate, before=settings.before, after=settings.after,
                                        min_beats=settings.min_beats, corr_threshold=settings.corr_threshold,
                                        align_rate=settings.extract_rate, out_rate=settings.beat_rate, sources=sources,
                                        subsample=settings.subsample, keep_beats=keep_beats)
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


def beat_rhythm(signal: np.ndarray, sampling_rate: float, info: dict, source: str | None = None) -> np.ndarray:
    """Rhythm features (``RHYTHM_FEATURES`` order) of a (12, n) record from its median-beat ``info``: the R peaks
    the beat was built on (all detected, ectopic ones too), taken from the extraction grid to the record's."""
    peaks = np.asarray(info["r_peaks"], dtype=np.float64) * float(sampling_rate) / float(info["record_sampling_rate"])
    return rhythm_vector(ecg_rhythm(signal, sampling_rate, peaks, source=source))


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


def load_rhythm(ds, folds: Sequence[int], ecg_ids, settings: BeatSettings = BeatSettings(),
                cache_dir: str | os.PathLike | None = None, max_records: int | None = None,
                progress: bool = True) -> np.ndarray:
    """Rhythm features (n, len(RHYTHM_FEATURES)) of the records ``ecg_ids`` (e.g. a ``BeatSplit``'s) of ``folds``.

    Cached like ``load_beats`` (every record of the folds, the same
    ``max_records`` cut); each record goes through ``ecg_factorbeat`` for its R
    peaks, then ``beat_rhythm``. A requested record without a beat raises ``ECGError``.
    """
    def load_fn(ecg_id: int) -> np.ndarray:
        path = ds.header_path(ecg_id)
        ecg = read_ecg(path, sampling_rate=ds.sampling_rate)
        _, info = ecg_factorbeat(ecg.signal, ecg.sampling_rate, settings, source=str(path))
        return beat_rhythm(ecg.signal, ecg.sampling_rate, info, source=str(path))[None].astype(np.float32)

    key = {"what": "factorecg-rhythm", "features": list(RHYTHM_FEATURES), "beat": settings.to_dict()}
    rows = _cached_rows(ds, folds, key, load_fn, "rhythm features", ecg_ids, cache_dir, max_records, progress)
    return np.asarray(rows, dtype=np.float64)[:, 0]


def _cached_rows(ds, folds: Sequence[int], key: dict, load_fn, what: str, ecg_ids, cache_dir, max_records,
                 progress: bool) -> np.ndarray:
    """``load_fn``'s array for every record of ``folds`` (the first ``max_records``) through ``SignalCache``,
    returned for ``ecg_ids`` in that order (every kept record when None); a requested record the cache could
    not build raises ``ECGError`` naming it."""
    ids = [int(i) for i in ds.records[ds.records["fold"].isin(tuple(int(f) for f in folds))].index]
    if max_records is not None:
        ids = ids[:int(max_records)]
    key_parts = {"dataset": "ptb-xl", "identity": ds.identity(), "source_rate": ds.sampling_rate, **key}
    cached, kept_ids, _ = SignalCache(cache_dir).get_or_build(
        key_parts, ids, load_fn, progress=progress, describe=lambda i: str(ds.header_path(i)),
        sources=ds.record_files)
    row = {int(i): k for k, i in enumerate(kept_ids)}
    want = kept_ids if ecg_ids is None else [int(i) for i in ecg_ids]
    missing = [int(i) for i in want if int(i) not in row]
    if missing:
        raise ECGError(ds.root, f"no {what} for record(s) {missing[:5]} (no usable median beat)")
    return np.asarray(cached)[[row[int(i)] for i in want]]


def pick_beats(beats: np.ndarray, k: int) -> np.ndarray:
    """``k`` of a record's individual beats (n, leads, m), evenly spread over the record (cycling when n < k)."""
    if not len(beats):
        raise ECGError(None, "a record without individual beats")
    return beats[np.round(np.linspace(0, len(beats) - 1, k)).astype(np.int64) if len(beats) >= k
                 else np.arange(k) % len(beats)]


def load_individual_beats(ds, folds: Sequence[int], settings: BeatSettings, per_record: int,
                          cache_dir: str | os.PathLike | None = None, max_records: int | None = None,
                          progress: bool = True, ecg_ids=None) -> np.ndarray:
    """``per_record`` individual beats (``pick_beats`` of the kept ones, levelled like the median) of each record
    of ``folds`` (or of ``ecg_ids`` among them, in that order), flat: (records * per_record, 12, m) mV.

    Cached like ``load_beats``; a requested record without a beat raises ``ECGError``.
    """
    def load_fn(ecg_id: int) -> np.ndarray:
        path = ds.header_path(ecg_id)
        ecg = read_ecg(path, sampling_rate=ds.sampling_rate)
        _, infos = ecg_factorbeat_batch(ecg.signal[None], ecg.sampling_rate, settings, sources=[str(path)],
                                        keep_beats=True)
        if isinstance(infos[0], ECGError):
            raise infos[0]
        return pick_beats(infos[0]["beats"], per_record).reshape(-1, settings.beat_samples)

    key = {"what": "factorecg-individual-beats", "per_record": int(per_record), "beat": settings.to_dict()}
    out = _cached_rows(ds, folds, key, load_fn, "individual beats", ecg_ids, cache_dir, max_records, progress)
    return out.astype(np.float32).reshape(-1, len(STANDARD_LEADS), settings.beat_samples)
