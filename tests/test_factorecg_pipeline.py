"""FactorECG end to end on a tiny PTB-XL subset: beats, stages, resume, checkpoint, classifier adapters."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from ecglens.beats import ecg_simulate
from ecglens.cli import build_parser
from ecglens.errors import ConfigError, ECGError
from ecglens.io import ECG, STANDARD_LEADS
from ecglens.models import load_classifier
from ecglens.models.factorecg import FactorVAEConfig
from ecglens.models.factorecg.classifier import BeatModelClassifier, FactorECGClassifier
from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat, load_beats
from ecglens.models.factorecg.train import (
    FactorTrainConfig,
    train_beat_blackbox,
    train_factorecg,
)
from ecglens.samples import list_samples, load_sample
from ecglens.training import STAGE_FILE

TINY_VAE = FactorVAEConfig(latent_dim=6, channels=(8, 16), kernel_sizes=(5, 3), hidden_dim=32, kl_warmup_epochs=1)
TINY_TRAIN = FactorTrainConfig(epochs=2, batch_size=8, patience=None, active_threshold=0.0, property_records=12,
                               blackbox_epochs=1, blackbox_patience=None)
N = 12


def _train(ptbxl_dir, out, cache, resume=False):
    return train_factorecg(ptbxl_dir, "superdiagnostic", out, seed=0, resume=resume, cache_dir=cache, max_records=N,
                           vae_config=TINY_VAE, train_config=TINY_TRAIN, progress=False)


@pytest.fixture(scope="module")
def run(ptbxl_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("factorecg")
    path = _train(ptbxl_dir, base / "run", base / "cache")
    return {"path": path, "out": base / "run", "cache": base / "cache", "data": ptbxl_dir}


def _stage(out, name):
    return json.loads((out / name / STAGE_FILE).read_text())


@pytest.mark.slow
def test_stages_produce_a_complete_checkpoint(run):
    path = run["path"]
    assert path == run["out"] / "model"
    config = json.loads((path / "config.json").read_text())
    assert config["kind"] == "factorecg"
    assert config["labels"] == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert config["vae"]["latent_dim"] == 6 and config["vae"]["beat_samples"] == 120
    assert config["beat"] == BeatSettings().to_dict()
    active = config["active"]
    assert active["rule"] == "kl" and len(active["kl_per_dim"]) == 6
    assert active["indices"] == [i for i, v in enumerate(active["kl_per_dim"]) if v > 0.0]
    assert config["standardizer"]["indices"] == active["indices"] == config["factor_models"]["factor_indices"]
    q = np.asarray(config["population"]["quantiles"])
    assert q.shape == (len(active["indices"]), 101) and np.all(np.diff(q, axis=1) >= 0)
    assert set(config["descriptions"]) == {str(i) for i in active["indices"]}
    splits = config["training"]["splits"]
    assert splits["train"]["n"] + splits["train"]["dropped_no_label"] + splits["train"]["skipped"]["count"] == N
    assert config["training"]["reconstruction"]["val"]["mae_uv"] > 0
    assert "test" not in config["training"]["reconstruction"]  # test-fold figures belong in the benchmark
    stages = config["training"]["stages"]
    assert list(stages) == ["vae", "factors", "factor_models"]
    assert all(f["wall_s"] > 0 and f["peak_rss_mib"] > 0 for f in stages.values())
    assert stages == {name: _stage(run["out"], name) for name in stages}
    assert stages["vae"]["epochs_run"] == 2 and (run["out"] / "factors" / "factors.json").is_file()


@pytest.mark.slow
def test_resume_skips_finished_stages(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run["out"], out)
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "factor_models")  # as if killed before the last stage finished
    before = {name: (out / name / STAGE_FILE).read_text() for name in ("vae", "factors")}
    factors = (out / "factors" / "factors.json").read_text()
    path = _train(run["data"], out, run["cache"], resume=True)
    assert {name: (out / name / STAGE_FILE).read_text() for name in ("vae", "factors")} == before
    assert (out / "factors" / "factors.json").read_text() == factors
    assert (out / "factor_models" / STAGE_FILE).is_file()
    a, b = load_classifier(path), load_classifier(run["path"])
    np.testing.assert_allclose(a.factor_models.coef, b.factor_models.coef)
    with pytest.raises(ECGError, match="previous run"):
        _train(run["data"], out, run["cache"], resume=False)


@pytest.mark.slow
def test_vae_from_reuses_a_trained_vae_for_another_label_set(run, tmp_path):
    out = tmp_path / "rhythm"
    path = train_factorecg(run["data"], "rhythm", out, seed=0, cache_dir=run["cache"], max_records=N,
                           vae_config=TINY_VAE, train_config=TINY_TRAIN, progress=False,
                           vae_from=run["out"] / "vae" / "model")
    assert _stage(out, "vae")["reused"] == str(run["out"] / "vae" / "model")  # not trained again
    assert not (out / "vae" / "last").exists()
    a = load_file(str(out / "vae" / "model" / "model.safetensors"))
    b = load_file(str(run["out"] / "vae" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((path / "config.json").read_text())
    assert config["label_set"] == "rhythm"
    with pytest.raises(ECGError, match="samples at"):
        train_factorecg(run["data"], "rhythm", tmp_path / "r500", cache_dir=run["cache"], max_records=N,
                        beat_rate=500.0, vae_config=TINY_VAE, train_config=TINY_TRAIN, progress=False,
                        vae_from=run["out"] / "vae" / "model")


@pytest.mark.slow
def test_checkpoint_loads_without_training_data_and_predicts_samples(run, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(run["path"], moved)
    clf = load_classifier(moved, device="cpu")
    assert isinstance(clf, FactorECGClassifier)
    ecgs = [load_sample(s.ecg_id) for s in list_samples()[:4]]
    probs = clf.predict_ecgs(ecgs)
    assert probs.shape == (4, 5) and np.all((probs >= 0) & (probs <= 1))
    # By hand: beat -> mu -> standardised active factors -> logistic regression.
    beat = ecg_factorbeat(ecgs[0].signal, ecgs[0].sampling_rate, clf.settings)[0]
    mu = clf.vae.encode(torch.from_numpy(beat[None]))[0].detach().numpy()[0]
    z = (mu[clf.standardizer.indices] - clf.standardizer.mean) / clf.standardizer.std
    x = clf.model_inputs(z, clf.beat_and_rhythm(ecgs[0])[2])[0]  # then the rhythm features, if the model uses them
    expected = 1 / (1 + np.exp(-(clf.factor_models.coef @ x + clf.factor_models.intercept)))
    np.testing.assert_allclose(probs[0], expected, rtol=1e-5, atol=1e-6)
    # The benchmark path (pipeline output, then predict_batch) agrees with predict_ecgs.
    x = np.stack([clf.pipeline.apply_signal(e.signal, e.sampling_rate)[0] for e in ecgs])
    np.testing.assert_allclose(clf.predict_batch(x, clf.sampling_rate), probs, atol=1e-6)
    np.testing.assert_allclose(clf.preprocess(ecgs[0])[:12], beat)  # the model input is the median beat (+ rhythm row)
    assert clf.skipped == []


@pytest.mark.slow
def test_flat_record_is_an_error_or_a_counted_prevalence(run):
    clf = load_classifier(run["path"], device="cpu")
    flat = ECG(np.zeros((12, 1000), np.float32), 100.0, STANDARD_LEADS, source="flat.csv")
    with pytest.raises(ECGError, match="flat.csv.*flat record"):
        clf.predict_ecgs([flat])
    sample = load_sample(list_samples()[0].ecg_id)
    good = clf.pipeline.apply_signal(sample.signal, sample.sampling_rate)[0]
    probs = clf.predict_batch(np.stack([good, np.zeros_like(good)]), clf.sampling_rate)
    np.testing.assert_allclose(probs[1], clf.factor_models.prevalence)
    assert [i for i, _ in clf.skipped] == [1] and "flat" in clf.skipped[0][1]


class _FakeSet:
    """The parts of ``PTBXL`` that ``load_beats`` uses, over .npy records (one of them flat)."""

    def __init__(self, root):
        self.root, self.sampling_rate = root, 100
        self.records = pd.DataFrame({"fold": [1, 1, 1]}, index=[1, 2, 3])
        for i in (1, 2):
            np.save(root / f"{i}.npy", ecg_simulate(10, 100, heart_rate=60 + 10 * i, seed=i)[0])
        np.save(root / "3.npy", np.zeros((12, 1000), np.float32))

    def identity(self):
        return {"root": str(self.root)}

    def header_path(self, ecg_id):
        return self.root / f"{ecg_id}.npy"

    def record_files(self, ecg_id):
        return (self.header_path(ecg_id),)


def test_load_beats_caches_and_lists_failed_extractions(tmp_path):
    ds = _FakeSet(tmp_path)
    split = load_beats(ds, (1,), BeatSettings(), cache_dir=tmp_path / "cache", progress=False)
    assert split.ecg_ids.tolist() == [1, 2] and split.beats.shape == (2, 12, 120)
    assert [i for i, _ in split.skipped] == [3] and "flat" in split.skipped[0][1]
    np.testing.assert_allclose(60 / split.rr, [70, 80], atol=1.0)
    again = load_beats(ds, (1,), BeatSettings(), cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(again.beats, split.beats)
    fine = load_beats(ds, (1,), BeatSettings(beat_rate=500.0), cache_dir=tmp_path / "cache", progress=False)
    assert fine.beats.shape == (2, 12, 600)
    assert len(list((tmp_path / "cache").iterdir())) == 2


@pytest.mark.slow
def test_beat_blackbox_trains_and_loads(run, tmp_path):
    path = train_beat_blackbox(run["data"], "superdiagnostic", tmp_path / "bb", cache_dir=run["cache"], max_records=N,
                               vae_config=TINY_VAE, train_config=TINY_TRAIN, progress=False)
    clf = load_classifier(path, device="cpu")
    assert type(clf) is BeatModelClassifier and clf.config["kind"] == "beat-blackbox"
    probs = clf.predict_ecgs([load_sample(s.ecg_id) for s in list_samples()[:2]])
    assert probs.shape == (2, 5) and np.all((probs > 0) & (probs < 1))


def test_train_command_options():
    def parse(*argv):
        return build_parser(list(argv)).parse_args(list(argv))

    args = parse("train", "factorecg", "--data", "D", "--out", "R", "--labels", "superdiagnostic", "--beat-rate", "500",
                 "--resume", "--cache", "C", "--epochs", "3")
    assert (args.labels, args.beat_rate, args.resume, args.cache, args.epochs) == ("superdiagnostic", 500, True, "C", 3)
    assert args.active_threshold is None  # the recipe's default applies
    with pytest.raises(SystemExit):
        parse("train", "factorecg", "--data", "D", "--out", "R", "--beat-rate", "250")


def test_train_config_round_trip_and_invalid_values():
    cfg = FactorTrainConfig(epochs=3, patience=None)
    assert FactorTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="at least 1"):
        FactorTrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="individual_target"):
        FactorTrainConfig(individual_target="mean")


def test_individual_beats_target_their_records_median():
    from ecglens.models.factorecg.train import _FactorStages

    medians = np.arange(3 * 12 * 4, dtype=np.float32).reshape(3, 12, 4)
    individual = np.repeat(medians, 2, axis=0) + 0.5
    split = type("Split", (), {"beats": medians})()
    for target, expected in (("self", None), ("median", np.concatenate([medians, np.repeat(medians, 2, axis=0)]))):
        stages = _FactorStages(Path("."), None, {"train": split}, None, None,
                               FactorTrainConfig(individual_beats=2, individual_target=target), 0, {}, None, individual)
        inputs, targets = stages._vae_train_beats()
        np.testing.assert_array_equal(inputs, np.concatenate([medians, individual]))
        if expected is None:
            assert targets is None
        else:
            np.testing.assert_array_equal(targets, expected)
    stages = _FactorStages(Path("."), None, {"train": split}, None, None,
                           FactorTrainConfig(individual_beats=2, individual_target="median"), 0, {}, None, individual[:5])
    with pytest.raises(ECGError, match="whole number"):
        stages._vae_train_beats()


@pytest.mark.slow
def test_vae_trains_with_individual_beats_aimed_at_their_median(run, tmp_path):
    from ecglens.datasets import PTBXL
    from ecglens.models.factorecg.data import load_individual_beats
    from ecglens.models.factorecg.train import train_vae

    ds, settings = PTBXL(run["data"], sampling_rate=100), BeatSettings()
    train = load_beats(ds, (1, 2, 3, 4, 5, 6, 7, 8), settings, cache_dir=run["cache"], max_records=N, progress=False)
    individual = load_individual_beats(ds, (1, 2, 3, 4, 5, 6, 7, 8), settings, 2, run["cache"], progress=False,
                                       ecg_ids=train.ecg_ids)
    cfg = FactorTrainConfig(epochs=1, batch_size=8, patience=None, individual_beats=2, individual_target="median")
    vae = train_vae({"train": train, "val": train}, TINY_VAE, cfg, tmp_path, progress=False, individual=individual)
    rows = [json.loads(line) for line in (tmp_path / "vae" / "train_log.jsonl").read_text().splitlines()]
    assert rows[0]["records"] == 3 * len(train.ecg_ids) and np.isfinite(rows[0]["val_mae_uv"])
    assert json.loads((tmp_path / "vae" / "model" / "config.json").read_text())["vae"]["latent_dim"] == vae.config.latent_dim
