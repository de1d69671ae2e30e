"""Signal processing on one record: R peaks, median beat, ECG measurements, synthetic ECGs.

``ecg_findpeaks`` finds R peaks on all leads at once, ``ecg_medianbeat`` (or
``median_beat`` for an ``ECG``) builds the outlier-free median beat (the
``_batch`` variants do either for a whole (records, leads, samples) array at once),
``ecg_measure`` reads intervals, axis and amplitudes off it, ``ecg_rhythm``
the rhythm features (RR irregularity, heart rate, P waves) from the R peaks, and
``ecg_simulate`` makes 12-lead test signals whose fiducials are known.
"""
from .measure import beat_baseline, beat_isoelectric_window, ecg_measure
from .median import ecg_medianbeat, ecg_medianbeat_batch, median_beat, resample_beat
from .rhythm import ecg_rhythm
from .rpeaks import ecg_energy, ecg_findpeaks, ecg_findpeaks_batch
from .simulate import ecg_simulate

__all__ = [
    "beat_baseline",
    "beat_isoelectric_window",
    "ecg_energy",
    "ecg_findpeaks",
    "ecg_findpeaks_batch",
    "ecg_measure",
    "ecg_medianbeat",
    "ecg_medianbeat_batch",
    "ecg_rhythm",
    "ecg_simulate",
    "median_beat",
    "resample_beat",
]
