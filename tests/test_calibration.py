"""Calibration maps, thresholds and the not-assessable rule (ecglens.calibration), and their use in models."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import ecglens
from ecglens.calibration import (MAX_CALL_RATIO, MIN_TRAIN_POSITIVES, MIN_VAL_POSITIVES, Calibration,
                                 choose_thresholds, fit_calibration, logit, sigmoid)
from ecglens.errors import ConfigError
from ecglens.metrics import macro_auroc
from ecglens.pretrained import pretrained_dir
from ecglens.samples import load_sample


def _synthetic(n=600, seed=0):
    """Raw probabilities sigmoid(z) of a model whose true map is sigmoid(1.5 z - 2) (over-cautious and biased)."""
    rng = np.random.default_rng(seed)
    z = 2 * rng.standard_normal((n, 4))
    y = (rng.random((n, 4)) < sigmoid(1.5 * z - 2)).astype(float)
    y[:, 3] = 0.0
    y[:2, 3] = 1.0  # a statement with 2 validation positives
    return z, y


def test_platt_recovers_a_known_map():
    z, y = _synthetic(4000)
    cal = fit_calibration(list("ABCD"), y, sigmoid(z), np.full(4, 100))
    np.testing.assert_allclose(cal.a[:3], 1.5, atol=0.15)
    np.testing.assert_allclose(cal.b[:3], -2.0, atol=0.15)


def test_rare_statements_use_the_pooled_map_and_threshold():
    z, y = _synthetic()
    cal = fit_calibration(list("ABCD"), y, sigmoid(z), np.array([100, 100, 100, 100]))
    pooled = cal.facts["pooled"]
    assert cal.facts["own_map"] == ["A", "B", "C"]
    assert cal.a[3] == pytest.approx(pooled["a"]) and cal.b[3] == pytest.approx(pooled["b"])
    assert cal.thresholds[3] == pytest.approx(np.median(cal.thresholds[:3]))
    assert y[:, 3].sum() < MIN_VAL_POSITIVES


def test_calibration_keeps_every_ranking():
    z, y = _synthetic()
    raw = sigmoid(z)
    for method in ("platt", "isotonic"):
        cal = fit_calibration(list("ABCD"), y, raw, np.full(4, 100), method=method)
        calibrated = cal.apply(raw)
        for j in range(3):
            order = np.argsort(raw[:, j], kind="stable")
            assert np.all(np.diff(calibrated[order, j]) >= -1e-12)  # monotone, so AUROC cannot change
        assert macro_auroc(y[:, :3], calibrated[:, :3])[0] == pytest.approx(macro_auroc(y[:, :3], raw[:, :3])[0],
                                                                            abs=1e-12 if method == "platt" else 2e-2)


def test_best_f1_threshold_by_hand():
    y = np.array([[1], [1], [0], [1], [0], [0]], dtype=float)
    p = np.array([[0.9], [0.8], [0.7], [0.6], [0.3], [0.1]])
    # cut 0.9: F1 0.5; 0.8: 0.8; 0.7: 0.667; 0.6: 0.857; 0.3: 0.75; 0.1: 0.667
    assert choose_thresholds(y, p, "f1")[0] == 0.6
    assert choose_thresholds(y, p, "f1", max_call_ratio=1.0)[0] == 0.8  # at most 3 calls: 0.9, 0.8 or 0.7
    assert choose_thresholds(y, p, "sensitivity:0.6")[0] == 0.8      # highest cut with 2 of 3 found
    assert choose_thresholds(y, p, "specificity:1.0")[0] == 0.8      # lowest cut calling no negative
    assert np.isnan(choose_thresholds(np.zeros((3, 1)), p[:3], "f1")[0])
    with pytest.raises(ConfigError, match="threshold rule"):
        choose_thresholds(y, p, "youden")


def test_call_cap_stops_a_weak_statement_calling_everything():
    rng = np.random.default_rng(1)
    y = (rng.random((500, 1)) < 0.1).astype(float)
    p = rng.random((500, 1))  # no skill: best F1 is to call (nearly) every record
    free, capped = choose_thresholds(y, p, "f1")[0], choose_thresholds(y, p, "f1", MAX_CALL_RATIO)[0]
    assert (p >= free).sum() > 400
    assert (p >= capped).sum() <= MAX_CALL_RATIO * y.sum()


def test_not_assessable_statements_are_never_called():
    z, y = _synthetic()
    cal = fit_calibration(list("ABCD"), y, sigmoid(z), np.array([100, 100, MIN_TRAIN_POSITIVES - 1, 0]))
    assert cal.assessable.tolist() == [True, True, False, False]
    assert not cal.calls(np.ones((5, 4)))[:, 2:].any() and cal.calls(np.ones((5, 4)))[:, :2].all()


def test_round_trip_and_invalid_sections():
    z, y = _synthetic()
    cal = fit_calibration(list("ABCD"), y, sigmoid(z), np.full(4, 100), method="isotonic")
    again = Calibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(again.apply(sigmoid(z)), cal.apply(sigmoid(z)))
    bad = cal.to_dict()
    del bad["thresholds"]["A"]
    with pytest.raises(ConfigError, match="incomplete"):
        Calibration.from_dict(bad, "x/config.json")


def test_shipped_models_are_calibrated_and_explanations_stay_exact():
    ecg = load_sample(172)
    for name in ("baseline", "protoecgnet", "factorecg", "beat-blackbox"):
        clf = ecglens.load_model(name).loaded
        assert clf.calibration is not None and clf.calibration.facts["fold"] == 9
        assert "PRC(S)" not in [s for s, ok in zip(clf.labels, clf.assessable) if ok]
        with clf.raw():
            raw = clf.predict_ecgs([ecg])
        np.testing.assert_allclose(clf.predict_ecgs([ecg]), clf.calibration.apply(raw), atol=1e-12)
    model = ecglens.load_model("protoecgnet")
    data = model.explain(ecg).data
    for s in data["statements"]:
        j = model.labels.index(s["statement"])
        assert s["logit"] == pytest.approx(s["bias"] + s["sum_contributions"], abs=1e-4)
        assert s["probability"] == pytest.approx(sigmoid(s["logit"]), abs=1e-6)
        cal = model.loaded.calibration
        assert s["calibrated_probability"] == pytest.approx(float(sigmoid(cal.a[j] * s["logit"] + cal.b[j])), abs=1e-5)
        assert s["called"] == (s["calibrated_probability"] >= s["threshold"] and s["assessable"])


@pytest.mark.slow
def test_calibrate_command_writes_a_new_checkpoint(ptbxl_dir, tmp_path):
    source = tmp_path / "baseline"
    shutil.copytree(pretrained_dir("baseline"), source)
    before = (source / "config.json").read_text()
    model = ecglens.calibrate(source, ptbxl_dir, tmp_path / "calibrated", cache_dir=tmp_path / "cache")
    assert (source / "config.json").read_text() == before  # the input model is not changed
    cal = model.loaded.calibration
    assert cal.facts["fold"] == 9 and cal.facts["n_validation"] > 300
    assert (tmp_path / "calibrated" / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    with pytest.raises(ecglens.ECGError, match="training fold"):
        ecglens.calibrate(source, ptbxl_dir, tmp_path / "x", fold=3)


@pytest.mark.slow
def test_ecglens_train_calibrates_what_it_trained(ptbxl_dir, tmp_path, capsys):
    from ecglens.cli import main

    run = tmp_path / "run"
    args = ["train", "baseline", "--data", str(ptbxl_dir), "--out", str(run), "--labels", "superdiagnostic",
            "--epochs", "1", "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(args) == 0
    cal = ecglens.load_model(run).loaded.calibration
    assert cal is not None and cal.facts["fold"] == 9 and cal.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert "calibrated" in capsys.readouterr().err
    from ecglens.cli import build_parser

    assert build_parser(args).parse_args(args + ["--no-calibrate"]).no_calibrate
    assert build_parser(["train"]).parse_args(["train", "qlst", "--vae", "V", "--classifier", "C", "--data", "D",
                                               "--out", "R"]).no_calibrate  # qLST has nothing to calibrate
