"""``ecglens.quality.assess_ecg`` on bundled samples and simulated ECGs, clean and corrupted."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ecglens.beats import ecg_simulate
from ecglens.errors import ConfigError, ECGError
from ecglens.io import ECG, STANDARD_LEADS, derive_limb_leads, read_ecg
from ecglens.quality import (
    AMPLITUDE_RANGE_MV,
    FLAT_FRACTION,
    NOISE_FRACTION,
    SATURATION_FRACTION,
    assess_ecg,
    load_quality_reference,
)
from ecglens.samples import list_samples, load_sample


@pytest.fixture(scope="module")
def sample() -> ECG:
    return load_sample(286)


def _simulated(rate: float, seed: int = 3) -> ECG:
    # axis 30 degrees: at 60 the simulator's aVL is exactly 0, which is rightly a flat lead
    signal, _ = ecg_simulate(10, rate, 70, axis_deg=30, noise=0.01, baseline_wander=0.1, seed=seed)
    return ECG(signal, rate, STANDARD_LEADS, source=f"simulated-{rate:g}Hz")


def _swap_arms(ecg: ECG) -> ECG:
    """Left- and right-arm electrodes swapped: the limb leads derived from -I and III (II' = III)."""
    limb = derive_limb_leads(-ecg.lead("I"), ecg.lead("III"))
    signal = np.vstack([-ecg.lead("I"), ecg.lead("III")] + [limb[k] for k in ("III", "aVR", "aVL", "aVF")]
                       + [ecg.lead(k) for k in STANDARD_LEADS[6:]])
    return ecg.with_signal(signal)


def test_clean_records_are_judgeable():
    records = [load_sample(info.ecg_id) for info in list_samples()] + [load_sample(286, 500)]
    records += [_simulated(rate) for rate in (100, 250, 500)]
    for ecg in records:
        report = assess_ecg(ecg)
        assert report.flags == [] and report.judgeable, (ecg.source, report.details)
        doc = report.to_dict()
        assert json.loads(json.dumps(doc, allow_nan=False)) == doc
        assert doc["judgeable"] is True and set(doc["measures"]) >= {"amplitude_mv", "noise_fraction", "beats",
                                                                    "ood_distance", "arm_swap_probability"}
        assert AMPLITUDE_RANGE_MV[0] < doc["measures"]["amplitude_mv"] < AMPLITUDE_RANGE_MV[1]


def _write_csv(path, signal):
    path.write_text(",".join(STANDARD_LEADS) + "\n" + "\n".join(",".join(f"{v:.9g}" for v in row) for row in signal.T))
    return path


@pytest.mark.parametrize("factor, unit", [(1000.0, "uV"), (0.001, "V")])
def test_wrong_units_are_flagged_with_the_fix(tmp_path, sample, factor, unit):
    path = _write_csv(tmp_path / "rec.csv", sample.signal.astype(np.float64) * factor)
    report = assess_ecg(read_ecg(path, sampling_rate=100))
    assert "units" in report.flags and "amplitude" not in report.flags and not report.judgeable
    assert f"--units {unit}" in report.details["units"]["message"]
    assert report.details["units"]["limit"] == list(AMPLITUDE_RANGE_MV)
    assert assess_ecg(read_ecg(path, sampling_rate=100, units=unit)).judgeable


def test_wrong_units_in_a_self_describing_file_point_at_the_file(sample):
    report = assess_ecg(sample.with_signal(sample.signal * 1000))
    assert report.flags[0] == "units" and "check the file's units" in report.details["units"]["message"]


def test_amplitude_no_unit_explains(sample):
    report = assess_ecg(sample.with_signal(sample.signal * 50))
    assert "amplitude" in report.flags and "units" not in report.flags
    assert report.details["amplitude"]["value"] > AMPLITUDE_RANGE_MV[1]


def test_flat_lead(sample):
    signal = sample.signal.copy()
    signal[STANDARD_LEADS.index("V3")] = 0.25  # an offset, no ECG
    report = assess_ecg(sample.with_signal(signal))
    assert report.flags[0] == "flat_lead" and set(report.flags) <= {"flat_lead", "ood"}
    detail = report.details["flat_lead"]
    assert detail["leads"] == ["V3"] and abs(detail["value"]) < 1e-9 and detail["limit"] == FLAT_FRACTION


def test_saturated_lead(sample):
    signal = sample.signal.copy()
    lead = STANDARD_LEADS.index("II")
    low, high = np.percentile(signal[lead], [5, 95])
    signal[lead] = np.clip(signal[lead], low, high)
    report = assess_ecg(sample.with_signal(signal))
    assert "saturated_lead" in report.flags and report.details["saturated_lead"]["leads"] == ["II"]
    assert report.details["saturated_lead"]["value"] > SATURATION_FRACTION


def test_short_record_is_not_saturated_but_has_too_few_beats(sample):
    report = assess_ecg(sample.with_signal(sample.signal[:, :80]))
    assert report.flags == ["too_few_beats"]
    assert report.details["too_few_beats"]["value"] < report.details["too_few_beats"]["limit"] == 2


@pytest.mark.parametrize("snr_db", [0.0, -10.0])
def test_white_noise(sample, snr_db):
    x = sample.signal.astype(np.float64)
    power = np.mean((x - x.mean(axis=1, keepdims=True)) ** 2)
    noisy = x + np.random.default_rng(0).standard_normal(x.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    report = assess_ecg(sample.with_signal(noisy))
    assert "noise" in report.flags and report.details["noise"]["value"] > NOISE_FRACTION


def test_mild_noise_passes(sample):
    signal, _ = ecg_simulate(10, 500, 70, axis_deg=30, noise=0.03, baseline_wander=0.3, seed=5)
    assert assess_ecg(ECG(signal, 500, STANDARD_LEADS)).judgeable


def test_out_of_distribution(sample):
    swapped_blocks = np.vstack([sample.signal[6:], sample.signal[:6]])  # chest leads where limb leads belong
    report = assess_ecg(sample.with_signal(swapped_blocks))
    assert report.flags == ["ood"]
    assert report.details["ood"]["value"] > report.details["ood"]["limit"] == pytest.approx(
        load_quality_reference()["ood"]["limit"], rel=1e-3)


@pytest.mark.parametrize("ecg_id", [138, 219, 286])
def test_arm_swap(ecg_id):
    ecg = load_sample(ecg_id)
    swapped = _swap_arms(ecg)
    assert np.allclose(swapped.lead("aVR"), ecg.lead("aVL"), atol=0.005)  # PTB-XL stores all 12, rounded
    report = assess_ecg(swapped)
    assert "arm_swap" in report.flags and assess_ecg(ecg).measures["arm_swap_probability"] < 0.5


def test_checks_subset_runs_only_those(sample):
    report = assess_ecg(sample.with_signal(sample.signal * 1000), checks=("amplitude", "flat_lead"))
    assert report.flags == ["units"]
    assert not {"beats", "ood_distance", "arm_swap_probability"} & set(report.measures)
    with pytest.raises(ValueError, match="unknown quality check"):
        assess_ecg(sample, checks=("amplitude", "vibes"))


def test_other_lead_sets_skip_the_twelve_lead_checks(sample):
    three = ECG(sample.signal[[0, 1, 6]], 100, ("I", "II", "V1"), source="three")
    report = assess_ecg(three)
    assert report.skipped == {"ood": "needs the 12 standard leads", "arm_swap": "needs the 12 standard leads"}
    assert report.judgeable and report.measures["beats"] >= 8
    flat = three.with_signal(np.vstack([three.signal[:2], np.zeros((1, three.n_samples))]))
    assert assess_ecg(flat).details["flat_lead"]["leads"] == ["V1"]


def test_non_finite_signal_is_an_ecg_error(sample):
    signal = sample.signal.copy()
    signal[3, 10] = np.nan
    with pytest.raises(ECGError, match="NaN") as err:
        assess_ecg(sample.with_signal(signal))
    assert err.value.path == sample.source


def test_reference_is_checked_and_matches_the_limits():
    ref = load_quality_reference()
    population = ref["population"]
    assert ref["fitted_on"]["folds"] == [1, 2, 3, 4, 5, 6, 7, 8]
    # every fixed limit lies outside what the training population shows
    assert AMPLITUDE_RANGE_MV[0] < population["amplitude_mv"]["p0"] < population["amplitude_mv"]["p100"] < AMPLITUDE_RANGE_MV[1]
    assert FLAT_FRACTION < population["min_lead_fraction"]["p0"]
    assert SATURATION_FRACTION > population["max_rail_fraction"]["p100"]
    assert NOISE_FRACTION > population["noise_fraction"]["p99.9"]
    assert ref["ood"]["limit"] == ref["ood"]["distance_quantiles"][str(ref["ood"]["quantile"])]
    broken = {**ref, "ood": {**ref["ood"], "precision": ref["ood"]["precision"][:-1]}}
    with pytest.raises(ConfigError, match="ood.precision"):
        assess_ecg(load_sample(286), reference=broken)


def test_fast_enough(sample):
    assess_ecg(sample)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        assess_ecg(sample)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[2] < 0.025  # ~2.5 ms measured (bench/results/abstention.md); a 10x slip fails

