"""Record quality: can a model's output on this ECG be taken at its word?

``assess_ecg(ecg)`` judges a record as read (any rate, before a model's own preprocessing) and
returns a JSON-ready ``QualityReport``: short flag codes, the measured value and the limit behind
each flag, and ``judgeable`` (no flag raised). A model gives a record that is not judgeable no
calls; ``Model.predict`` wires it in with one line per record::

    quality = assess_ecg(ecg).to_dict()   # {"judgeable": bool, "flags": [...], "details": {...}, ...}

Checks (flag codes) and where each limit comes from:

- ``units`` / ``amplitude``: the record's amplitude (median over leads of a robust peak-to-peak,
  below) must lie in ``AMPLITUDE_RANGE_MV``. A record outside it whose amplitude /1000 (or x1000)
  would be typical (``TYPICAL_AMPLITUDE_MV``) is flagged ``units`` with the ``--units`` that fixes
  it; anything else outside is ``amplitude``.
- ``flat_lead``: a lead whose amplitude is under ``FLAT_FRACTION`` of the record's 75th-percentile
  lead (a disconnected or zeroed lead).
- ``saturated_lead``: a lead with more than ``SATURATION_FRACTION`` (and ``SATURATION_MIN_SAMPLES``)
  of its samples on one rail (within ``SATURATION_TOLERANCE`` of its range from its maximum or
  minimum): a clipped amplifier.
- ``noise``: the median over leads of the power fraction in ``NOISE_BAND_HZ`` (30-45 Hz, where an
  ECG has little power and white or muscle noise has much) over ``NOISE_TOTAL_HZ``.
- ``too_few_beats``: fewer R peaks (``beats.ecg_findpeaks``) than ``MIN_BEATS`` or than the
  detector's own slowest plausible rate (``beats.rpeaks.HR_RANGE``, 20 bpm) allows.
- ``ood``: the Mahalanobis distance of 28 amplitude, polarity and spectral statistics from the
  training population (PTB-XL folds 1-8) over the limit stored with it.
- ``arm_swap``: a logistic model on lead polarities and limb-precordial correlations, fitted on
  folds 1-8 and their left-arm/right-arm swapped copies, over ``ARM_SWAP_PROBABILITY``.

Every statistic except the rail count is taken at ``REFERENCE_RATE_HZ`` in ``BAND_HZ``, so a
500-Hz record is judged as the 100-Hz reference population and the models see it.
The reference statistics (``data/quality_reference.json``) are fitted by
``bench/fit_quality_reference.py`` on training folds 1-8; the limits marked "fold 9" were chosen
on corrupted copies of validation fold 9 by ``bench/abstention.py``, which reports fold 10.
"""
from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from typing import Any

import numpy as np

from .beats.rpeaks import HR_RANGE, ecg_findpeaks
from .errors import ConfigError, ECGError
from .io.leads import STANDARD_LEADS
from .io.record import ECG
from .preprocess.pipeline import resample_signal

REFERENCE_NAME = "data/quality_reference.json"

# The reference population is PTB-XL's records100 and every shipped model reads 100 Hz.
REFERENCE_RATE_HZ = 100.0
# Above baseline wander, below mains and its aliases: the band ProtoECGNet's pipeline keeps.
BAND_HZ = (0.5, 40.0)
# Robust peak-to-peak: the 0.5th to 99.5th percentile of a lead in BAND_HZ. In a 10-s record that
# ignores 5 samples at each end, fewer than its R peaks, so QRS peaks count and a lone spike does not.
AMPLITUDE_PERCENTILES = (0.5, 99.5)
# Record amplitude (median lead): training folds 1-8 span 0.32-3.65 mV (quality_reference.json,
# "population"); the limits sit a factor 5-6 outside it so low-voltage and LVH records pass.
AMPLITUDE_RANGE_MV = (0.05, 20.0)
# mV against uV or V: the factor a wrong unit puts an ECG off by. A record outside AMPLITUDE_RANGE_MV
# is blamed on its unit when 1/1000 (1000x) of its amplitude is typical: within TYPICAL_AMPLITUDE_MV,
# the training folds' 0.32-3.65 mV widened by a factor of about 1.5.
UNIT_FACTOR = 1000.0
TYPICAL_AMPLITUDE_MV = (0.2, 5.0)
# A lead under 2 % of the record's 75th-percentile lead is flat; the smallest training lead is 3.6 %
# of it (an aVL at right angles to the heart's axis; folds 1-8, "population" in the reference).
FLAT_FRACTION = 0.02
# Samples within 0.2 % of a lead's range from its maximum (minimum) sit on that rail: 2 uV on a
# 1-mV lead, twice PTB-XL's 1-uV quantum.
SATURATION_TOLERANCE = 0.002
# Training folds 1-8 hold at most 1.4 % of a lead's samples on one rail (0.2 % median, "population"
# in the reference); a lead clipped at its 2nd/98th percentiles holds 2 %.
SATURATION_FRACTION = 0.015
# ... and more than 5 samples: in a record under a few seconds a peak's own couple of samples would
# otherwise exceed the fraction.
SATURATION_MIN_SAMPLES = 5
# Noise band: above most of a QRS complex's power, below a 100-Hz record's 50-Hz Nyquist limit.
NOISE_BAND_HZ = (30.0, 45.0)
NOISE_TOTAL_HZ = (0.5, 45.0)
# fold 9: clean records reach 0.084 at most (those with a PTB-XL noise remark too), white noise at
# 0 dB SNR puts every record over 0.16; 0.10 lies between (bench/results/abstention.md, tuning).
NOISE_FRACTION = 0.10
# A median beat and an RR interval need two beats; over longer records, the R-peak detector's own
# slowest plausible rate (20 bpm) sets the count.
MIN_BEATS = 2
MIN_HEART_RATE_BPM = HR_RANGE[0]
# fold 9: no clean record over 0.8 (one over 0.5), 96.5 % of arm-swapped copies over 0.9; 0.9 keeps a
# margin above the clean records (bench/results/abstention.md, tuning).
ARM_SWAP_PROBABILITY = 0.9
# The OOD spectral shape: P and T waves, the QRS body, QRS edges and noise.
SPECTRAL_BANDS_HZ = ((0.5, 5.0), (5.0, 15.0), (15.0, 40.0))
LIMB_LEADS = STANDARD_LEADS[:6]
PRECORDIAL_LEADS = STANDARD_LEADS[6:]

CHECKS = ("amplitude", "flat_lead", "saturated_lead", "noise", "too_few_beats", "ood", "arm_swap")
FLAGS = ("units", "amplitude", "flat_lead", "saturated_lead", "noise", "too_few_beats", "ood", "arm_swap")
_NEEDS_STANDARD_LEADS = ("ood", "arm_swap")


@dataclass(frozen=True)
class QualityReport:
    """What ``assess_ecg`` found: ``flags`` (codes in ``FLAGS`` order), per flag its ``details``
    (measured ``value``, ``limit``, ``message``, ``leads`` where a lead is at fault), every
    measured statistic in ``measures``, and checks not run with the reason in ``skipped``."""

    flags: list[str]
    details: dict[str, dict[str, Any]]
    measures: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def judgeable(self) -> bool:
        """True when no check raised a flag: the record may get calls."""
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``judgeable``, ``flags``, ``details``, ``measures``, ``skipped``."""
        return {"judgeable": self.judgeable, "flags": list(self.flags), "details": self.details,
                "measures": self.measures, "skipped": dict(self.skipped)}


@lru_cache(maxsize=1)
def load_quality_reference() -> dict[str, Any]:
    """The packaged reference statistics (``data/quality_reference.json``), checked once."""
    ref = files("ecglens").joinpath(REFERENCE_NAME)
    try:
        doc = json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(ref), f"cannot read the quality reference ({exc})") from exc
    _check_reference(doc, str(ref))
    return doc


def _check_reference(doc: Any, source: str) -> None:
    """A ConfigError naming ``source`` unless ``doc`` holds the OOD and arm-swap models in their shapes."""
    try:
        k = len(doc["ood"]["features"])
        shapes = {"ood.mean": (np.shape(doc["ood"]["mean"]), (k,)),
                  "ood.precision": (np.shape(doc["ood"]["precision"]), (k, k)),
                  "arm_swap.mean": (np.shape(doc["arm_swap"]["mean"]), (len(doc["arm_swap"]["features"]),)),
                  "arm_swap.scale": (np.shape(doc["arm_swap"]["scale"]), (len(doc["arm_swap"]["features"]),)),
                  "arm_swap.coef": (np.shape(doc["arm_swap"]["coef"]), (len(doc["arm_swap"]["features"]),))}
        numbers = [np.asarray(doc[model][key], dtype=float) for model, key in
                   (("ood", "mean"), ("ood", "precision"), ("ood", "limit"), ("arm_swap", "mean"),
                    ("arm_swap", "scale"), ("arm_swap", "coef"), ("arm_swap", "intercept"))]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(source, f"quality reference lacks or mangles {exc}") from exc
    for name, (found, want) in shapes.items():
        if found != want:
            raise ConfigError(source, f"quality reference {name} has shape {found}, expected {want}")
    if doc["ood"]["features"] != ood_feature_names() or doc["arm_swap"]["features"] != arm_swap_feature_names():
        raise ConfigError(source, "quality reference features differ from this version's; refit it with "
                                  "bench/fit_quality_reference.py")
    if not all(np.isfinite(a).all() for a in numbers):
        raise ConfigError(source, "quality reference holds a non-finite number")


def _rail_fraction(x: np.ndarray) -> np.ndarray:
    """Per lead, the larger fraction of samples within SATURATION_TOLERANCE of the range from its max or min."""
    top, bottom = x.max(axis=1, keepdims=True), x.min(axis=1, keepdims=True)
    tol = SATURATION_TOLERANCE * (top - bottom)
    return np.maximum((x >= top - tol).mean(axis=1), (x <= bottom + tol).mean(axis=1))


def _band_power(power: np.ndarray, freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    return power[:, (freqs >= low) & (freqs <= high)].sum(axis=1)


def measure_ecg(ecg: ECG) -> dict[str, Any]:
    """The statistics ``assess_ecg`` judges, per lead (the reference is fitted on these).

    ``signal_100`` (the record at 100 Hz), ``lead_amplitude_mv`` (robust peak-to-peak in BAND_HZ),
    ``polarity`` ((top + bottom - 2 median) / peak-to-peak: +1 all upward, -1 all downward),
    ``rail_fraction`` (at the record's own rate: resampling would smooth a clipped plateau),
    ``noise_fraction``, ``band_fractions`` (leads x SPECTRAL_BANDS_HZ, of the BAND_HZ power) and
    ``correlations`` (limb x precordial leads in BAND_HZ; None without the 12 standard leads).
    """
    x = np.asarray(ecg.signal, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ECGError(ecg.source, "signal holds NaN or infinite values")
    x100 = np.asarray(resample_signal(x, ecg.sampling_rate, REFERENCE_RATE_HZ), dtype=np.float64)
    n = x100.shape[1]
    t = np.linspace(-1.0, 1.0, n)
    slope = (x100 @ t) / max(float(t @ t), 1e-12)
    detrended = x100 - x100.mean(axis=1, keepdims=True) - slope[:, None] * t  # no edge jump to leak power
    freqs = np.fft.rfftfreq(n, 1.0 / REFERENCE_RATE_HZ)
    spectrum = np.fft.rfft(detrended, axis=1)
    filtered = np.fft.irfft(spectrum * ((freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])), n, axis=1)
    windowed = np.fft.rfft(detrended * np.hanning(n), axis=1)
    power = windowed.real ** 2 + windowed.imag ** 2
    bottom, middle, top = np.percentile(filtered, [AMPLITUDE_PERCENTILES[0], 50.0, AMPLITUDE_PERCENTILES[1]], axis=1)
    amplitude = top - bottom
    polarity = np.divide(top + bottom - 2.0 * middle, amplitude, out=np.zeros_like(amplitude), where=amplitude > 0)
    total = _band_power(power, freqs, *NOISE_TOTAL_HZ)
    noise = np.divide(_band_power(power, freqs, *NOISE_BAND_HZ), total, out=np.zeros_like(total), where=total > 0)
    in_band = _band_power(power, freqs, *BAND_HZ)
    bands = np.stack([_band_power(power, freqs, lo, hi) for lo, hi in SPECTRAL_BANDS_HZ], axis=1)
    bands = np.divide(bands, in_band[:, None], out=np.zeros_like(bands), where=in_band[:, None] > 0)
    correlations = None
    if tuple(ecg.leads) == STANDARD_LEADS:
        unit = filtered / np.maximum(np.linalg.norm(filtered, axis=1, keepdims=True), 1e-12)
        correlations = unit[:6] @ unit[6:].T
    return {"signal_100": x100, "lead_amplitude_mv": amplitude, "polarity": polarity,
            "rail_fraction": _rail_fraction(x), "noise_fraction": noise, "band_fractions": bands,
            "correlations": correlations}


def ood_feature_names() -> list[str]:
    """Names of the OOD statistics, in ``ood_features`` order."""
    bands = [f"log_power_fraction_{lo:g}-{hi:g}Hz" for lo, hi in SPECTRAL_BANDS_HZ]
    return ([f"log_relative_amplitude_{lead}" for lead in STANDARD_LEADS] + ["log_amplitude_mv"]
            + [f"polarity_{lead}" for lead in STANDARD_LEADS] + bands)


def ood_features(measures: dict[str, Any]) -> np.ndarray:
    """The OOD statistics of a 12-lead record: each lead's log amplitude relative to the median lead,
    the log median-lead amplitude, each lead's polarity and the log spectral band fractions (median lead)."""
    amplitude = measures["lead_amplitude_mv"]
    level = max(float(np.median(amplitude)), 1e-9)
    relative = np.log(np.maximum(amplitude, 1e-3 * level) / level)  # a flat lead counts as 1/1000
    bands = np.log(np.median(measures["band_fractions"], axis=0) + 1e-6)
    return np.concatenate([relative, [math.log(level)], measures["polarity"], bands])


def arm_swap_feature_names() -> list[str]:
    """Names of the arm-swap statistics, in ``arm_swap_features`` order."""
    return ([f"polarity_{lead}" for lead in STANDARD_LEADS]
            + [f"correlation_{a}_{b}" for a in LIMB_LEADS for b in PRECORDIAL_LEADS])


def arm_swap_features(measures: dict[str, Any]) -> np.ndarray:
    """The arm-swap statistics of a 12-lead record: lead polarities and limb-precordial correlations.
    A left-arm/right-arm swap inverts lead I against V5-V6, which look at the heart from the same side."""
    return np.concatenate([measures["polarity"], measures["correlations"].ravel()])


def _sig(value: float) -> float | None:
    """``value`` to 4 significant digits for the report (None when not finite)."""
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _units_hint(ecg: ECG, unit: str) -> str:
    if ecg.metadata.get("format") in ("csv", "npy"):
        return f"pass --units {unit} (units={unit!r} to read_ecg)"
    return "check the file's units or gain"


def _check_amplitude(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    level = float(np.median(m["lead_amplitude_mv"]))
    low, high = AMPLITUDE_RANGE_MV
    if low <= level <= high:
        return None
    detail = {"value": _sig(level), "limit": list(AMPLITUDE_RANGE_MV), "unit": "mV"}
    typical_low, typical_high = TYPICAL_AMPLITUDE_MV
    if level > high and typical_low <= level / UNIT_FACTOR <= typical_high:
        return "units", {**detail, "message": f"amplitude {level:.4g} mV is ~1000x an ECG's: the values look like "
                                              f"microvolts read as millivolts; {_units_hint(ecg, 'uV')}"}
    if level < low and typical_low <= level * UNIT_FACTOR <= typical_high:
        return "units", {**detail, "message": f"amplitude {level:.3g} mV is ~1/1000 of an ECG's: the values look like "
                                              f"volts read as millivolts; {_units_hint(ecg, 'V')}"}
    return "amplitude", {**detail, "message": f"amplitude {level:.4g} mV is outside {low:g}-{high:g} mV: "
                                              "not a plausible ECG at any unit"}


def _flat(m: dict[str, Any]) -> np.ndarray:
    amplitude = m["lead_amplitude_mv"]
    return amplitude <= FLAT_FRACTION * float(np.percentile(amplitude, 75))


def _check_flat(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    flat = _flat(m)
    if not flat.any():
        return None
    amplitude = m["lead_amplitude_mv"]
    leads = [ecg.leads[i] for i in np.flatnonzero(flat)]
    ratio = float(amplitude[flat].max() / max(float(np.percentile(amplitude, 75)), 1e-12))
    return "flat_lead", {"value": _sig(ratio), "limit": FLAT_FRACTION, "unit": "fraction of the 75th-percentile lead",
                         "leads": leads, "message": f"lead(s) {', '.join(leads)} flat: under {FLAT_FRACTION:.0%} "
                                                    "of the record's typical lead amplitude"}


def _rails(m: dict[str, Any]) -> np.ndarray:
    """Per lead the rail fraction, 0 for flat leads (all rail; flat_lead says so)."""
    return np.where(_flat(m), 0.0, m["rail_fraction"])


def _check_saturated(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    rails = _rails(m)
    bad = (rails > SATURATION_FRACTION) & (rails * ecg.n_samples > SATURATION_MIN_SAMPLES)
    if not bad.any():
        return None
    leads = [ecg.leads[i] for i in np.flatnonzero(bad)]
    return "saturated_lead", {"value": _sig(float(rails.max())), "limit": SATURATION_FRACTION,
                              "unit": "fraction of samples on one rail", "leads": leads,
                              "message": f"lead(s) {', '.join(leads)} clipped: over {SATURATION_FRACTION:.1%} of "
                                         "samples sit at the lead's extreme value"}


def _noise_level(m: dict[str, Any]) -> float:
    live = ~_flat(m)
    return float(np.median(m["noise_fraction"][live])) if live.any() else float("nan")


def _check_noise(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    level = _noise_level(m)
    if not level > NOISE_FRACTION:
        return None
    return "noise", {"value": _sig(level), "limit": NOISE_FRACTION,
                     "unit": f"power fraction {NOISE_BAND_HZ[0]:g}-{NOISE_BAND_HZ[1]:g} Hz",
                     "message": f"noisy: {level:.0%} of the power lies at {NOISE_BAND_HZ[0]:g}-{NOISE_BAND_HZ[1]:g} Hz "
                                f"(limit {NOISE_FRACTION:.0%})"}


def _beats(ecg: ECG, m: dict[str, Any]) -> tuple[int, str | None]:
    try:
        peaks, _ = ecg_findpeaks(m["signal_100"], REFERENCE_RATE_HZ, source=ecg.source)
    except ECGError as exc:
        return 0, exc.problem
    return len(peaks), None


def _min_beats(ecg: ECG) -> int:
    return max(MIN_BEATS, math.floor(ecg.duration * MIN_HEART_RATE_BPM / 60.0))


def _check_beats(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    count, why = m["beats"]
    need = _min_beats(ecg)
    if count >= need:
        return None
    reason = f" ({why})" if why else ""
    return "too_few_beats", {"value": count, "limit": need, "unit": "R peaks",
                             "message": f"{count} beat(s) detected in {ecg.duration:.3g} s{reason}; "
                                        f"at least {need} needed"}


def _ood_distance(m: dict[str, Any], ref: dict[str, Any]) -> float:
    diff = ood_features(m) - np.asarray(ref["ood"]["mean"])
    return float(np.sqrt(max(float(diff @ np.asarray(ref["ood"]["precision"]) @ diff), 0.0)))


def _check_ood(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    distance, limit = m["ood"], float(m["reference"]["ood"]["limit"])
    if not distance > limit:
        return None
    return "ood", {"value": _sig(distance), "limit": _sig(limit), "unit": "Mahalanobis distance",
                   "message": f"unlike the training ECGs: distance {distance:.3g} from their amplitude, polarity "
                              f"and spectral statistics (limit {limit:.3g})"}


def _arm_swap_probability(m: dict[str, Any], ref: dict[str, Any]) -> float:
    model = ref["arm_swap"]
    z = (arm_swap_features(m) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    logit = float(z @ np.asarray(model["coef"]) + float(model["intercept"]))
    return 1.0 / (1.0 + math.exp(-min(max(logit, -700.0), 700.0)))


def _check_arm_swap(ecg: ECG, m: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    p = m["arm_swap"]
    if not p > ARM_SWAP_PROBABILITY:
        return None
    return "arm_swap", {"value": _sig(p), "limit": ARM_SWAP_PROBABILITY, "unit": "probability",
                        "message": f"left- and right-arm electrodes look swapped (lead I inverted against V5-V6; "
                                   f"probability {p:.2f})"}


_CHECK_FUNCTIONS = {"amplitude": _check_amplitude, "flat_lead": _check_flat, "saturated_lead": _check_saturated,
                    "noise": _check_noise, "too_few_beats": _check_beats, "ood": _check_ood,
                    "arm_swap": _check_arm_swap}


def assess_ecg(ecg: ECG, checks: Collection[str] | None = None,
               reference: dict[str, Any] | None = None) -> QualityReport:
    """Judge one record as read (any rate, before a model's pipeline); see the module docstring.

    ``checks`` picks a subset of ``CHECKS`` (default all): a reader validating what it returns can
    run the cheap signal checks (``amplitude``, ``flat_lead``, ``saturated_lead``) alone.
    ``reference`` replaces the packaged reference statistics (``load_quality_reference``; a
    malformed one raises ``ConfigError``).
    ``ood`` and ``arm_swap`` need the 12 standard leads and are listed in ``skipped`` otherwise.
    Raises ``ECGError`` naming the record for a non-finite signal.
    """
    wanted = CHECKS if checks is None else tuple(checks)
    unknown = sorted(set(wanted) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown quality check(s) {unknown}; choose from {', '.join(CHECKS)}")
    if reference is not None:
        _check_reference(reference, "the reference given to assess_ecg")
    m = measure_ecg(ecg)
    skipped = {}
    if m["correlations"] is None:
        skipped = {c: "needs the 12 standard leads" for c in _NEEDS_STANDARD_LEADS if c in wanted}
    run = [c for c in CHECKS if c in wanted and c not in skipped]
    measures: dict[str, Any] = {"amplitude_mv": _sig(float(np.median(m["lead_amplitude_mv"]))),
                                "min_lead_fraction": _sig(float(m["lead_amplitude_mv"].min()
                                                                / max(float(np.percentile(m["lead_amplitude_mv"], 75)), 1e-12))),
                                "max_rail_fraction": _sig(float(_rails(m).max())),
                                "noise_fraction": _sig(_noise_level(m))}
    if "too_few_beats" in run:
        m["beats"] = _beats(ecg, m)
        measures["beats"] = m["beats"][0]
    if "ood" in run or "arm_swap" in run:
        m["reference"] = load_quality_reference() if reference is None else reference
    if "ood" in run:
        m["ood"] = _ood_distance(m, m["reference"])
        measures["ood_distance"] = _sig(m["ood"])
    if "arm_swap" in run:
        m["arm_swap"] = _arm_swap_probability(m, m["reference"])
        measures["arm_swap_probability"] = _sig(m["arm_swap"])
    found = dict(filter(None, (_CHECK_FUNCTIONS[c](ecg, m) for c in run)))
    flags = [f for f in FLAGS if f in found]
    return QualityReport(flags=flags, details={f: found[f] for f in flags}, measures=measures, skipped=skipped)
