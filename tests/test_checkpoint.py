"""Checkpoint directories: round trip, atomic replacement, and clear errors for damaged ones."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecglens.errors import ConfigError, ECGError
from ecglens.models import load_classifier
from ecglens.models.registry import checkpoint_kinds
from ecglens.models.baseline import BaselineConfig, XResNet1d, XResNetConfig
from ecglens.preprocess import Bandpass, Pipeline, Resample, Scale, Standardize
from ecglens.training import load_checkpoint, load_config, load_extra, save_checkpoint

LABELS = ["CD", "HYP", "MI", "NORM", "STTC"]
TINY = XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 16), stem=(8, 8, 8), head_hidden=12)




def baseline_config(recipe: BaselineConfig, pipeline: Pipeline) -> dict:
    return {"kind": "baseline", "model": recipe.model.to_dict(), "recipe": recipe.to_dict(),
            "pipeline": pipeline.to_dict(), "labels": LABELS, "label_set": "superdiagnostic",
            "training": {"folds": [1, 2], "n_train": 10, "seed": 0}}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = XResNet1d(len(LABELS), TINY)
    with torch.no_grad():  # non-trivial batch-norm statistics, so they must round-trip too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    recipe = BaselineConfig(model=TINY, train_window_s=2.5, window_s=2.5, stride_s=1.25)
    pipeline = Pipeline((Resample(100), Bandpass(0.5, 40.0), Standardize(), Scale([0.1] * 12, [1.5] * 12)))
    path = save_checkpoint(tmp_path / "ckpt", model, baseline_config(recipe, pipeline))
    return path, model.eval(), pipeline


def test_round_trip_gives_identical_outputs(checkpoint):
    path, model, pipeline = checkpoint
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    state, config = load_checkpoint(path)
    rebuilt = XResNet1d(len(config["labels"]), XResNetConfig.from_dict(config["model"]))
    rebuilt.load_state_dict(state)
    rebuilt.eval()
    x = torch.randn(3, 12, 250)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert Pipeline.from_dict(config["pipeline"]) == pipeline
    assert config["labels"] == LABELS and config["label_set"] == "superdiagnostic"
    assert config["training"]["n_train"] == 10 and "ecglens_version" in config and "saved" in config


def test_load_classifier_uses_the_stored_pipeline_and_windows(checkpoint):
    path, model, pipeline = checkpoint
    clf = load_classifier(path, device="cpu")
    assert clf.labels == LABELS and clf.pipeline == pipeline
    assert (clf.sampling_rate, clf.window, clf.stride, clf.aggregate) == (100.0, 250, 125, "mean")  # the default recipe's
    raw = np.random.default_rng(0).normal(size=(12, 1000)).astype(np.float32)
    x, _ = pipeline.apply_signal(raw, 100.0)
    windows = torch.from_numpy(np.stack([x[:, s:s + 250] for s in range(0, 751, 125)]))
    with torch.no_grad():
        expected = torch.sigmoid(model(windows)).mean(dim=0).numpy()
    np.testing.assert_allclose(clf.predict_batch(x[None], 100.0)[0], expected, rtol=1e-5, atol=1e-6)


def test_save_replaces_atomically(tmp_path, checkpoint):
    path, model, _ = checkpoint
    save_checkpoint(path, {"w": torch.ones(2)}, {"kind": "custom", "note": "second"})
    state, config = load_checkpoint(path)
    assert list(state) == ["w"] and config["note"] == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]  # no temporary or old directories left


def test_save_needs_a_kind(tmp_path):
    with pytest.raises(ECGError, match="kind"):
        save_checkpoint(tmp_path / "c", {"w": torch.ones(1)}, {"model": {}})
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("damage, problem", [
    (lambda p: (p / "model.safetensors").unlink(), "model.safetensors is missing"),
    (lambda p: (p / "config.json").unlink(), "config.json is missing"),
    (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:100]), "corrupt"),
    (lambda p: (p / "model.safetensors").write_bytes(b"\x00" * 64), "corrupt"),
    (lambda p: (p / "config.json").write_text("{not json"), "not JSON"),
    (lambda p: (p / "config.json").write_text(json.dumps({"labels": []})), "kind"),
])
def test_damaged_checkpoint_is_an_error_naming_the_directory(checkpoint, damage, problem):
    path = checkpoint[0]
    damage(path)
    with pytest.raises(ECGError, match=problem) as err:
        load_checkpoint(path)
    assert err.value.path == str(path) and str(path) in str(err.value)
    with pytest.raises(ECGError):
        load_classifier(path)


def test_missing_directory_and_unknown_kind(tmp_path):
    with pytest.raises(ECGError, match="no such checkpoint directory"):
        load_config(tmp_path / "absent")
    save_checkpoint(tmp_path / "odd", {"w": torch.ones(1)}, {"kind": "mystery"})
    with pytest.raises(ConfigError, match="no model family loads checkpoint kind 'mystery'"):
        load_classifier(tmp_path / "odd")
    assert "baseline" in checkpoint_kinds()


def test_weights_that_do_not_fit_the_config(tmp_path, checkpoint):
    path = checkpoint[0]
    config = load_config(path)
    config["recipe"]["model"]["widths"] = [8, 32]
    save_checkpoint(tmp_path / "mismatch", load_checkpoint(path)[0], config)
    with pytest.raises(ConfigError, match="do not fit"):
        load_classifier(tmp_path / "mismatch")


def test_extra_files_load_with_weights_only(tmp_path):
    state = {"epoch": 3, "opt": {"lr": 0.1, "betas": (0.9, 0.99)}, "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "last", {"w": torch.zeros(1)}, {"kind": "custom"}, extra_files={"training_state.pt": state})
    back = load_extra(tmp_path / "last", "training_state.pt")
    assert back["epoch"] == 3 and back["opt"]["betas"] == (0.9, 0.99) and torch.equal(back["rng"], state["rng"])
    (tmp_path / "last" / "training_state.pt").write_bytes(b"garbage")
    with pytest.raises(ECGError, match="training_state.pt is corrupt"):
        load_extra(tmp_path / "last", "training_state.pt")
