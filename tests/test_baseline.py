"""XResNet1d architecture, baseline recipes, the training dataset, and a tiny end-to-end PTB-XL run."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ecglens.errors import ECGError
from ecglens.models import load_classifier, window_starts
from ecglens.models.baseline import (
    RECIPES,
    BaselineConfig,
    XResNet1d,
    XResNetConfig,
    count_parameters,
    get_recipe,
    positive_weights,
    train_baseline,
)
from ecglens.models.baseline import options as baseline_options
from ecglens.models.baseline import train as baseline_train
from ecglens.models.xresnet1d import ResBlock
from ecglens.preprocess import Pipeline, Scale
from ecglens.samples import load_sample
from ecglens.training import STAGE_FILE, RecordDataset, read_log




@pytest.mark.parametrize("config, length", [
    (XResNetConfig.named("xresnet1d18", widths=(16, 32, 64, 128)), 1000),
    (XResNetConfig.named("xresnet1d18", widths=(16, 32, 64, 128)), 333),
    (XResNetConfig.named("xresnet1d50", widths=(8, 16, 32, 64)), 250),
    (XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 16), head_hidden=None), 37),
])
def test_xresnet_output_shapes(config, length):
    model = XResNet1d(7, config).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 12, length)).shape == (3, 7)
        features = model.features(torch.randn(2, 12, length))
    expected = config.widths[-1] * config.expansion
    assert features.shape[:2] == (2, expected) and model.n_features == expected
    # stem /2, max pool /2, then /2 per later stage (ceil at each stride)
    t = length
    for _ in range(2 + len(config.layers) - 1):
        t = -(-t // 2)
    assert features.shape[2] == t


def test_xresnet1d101_is_the_benchmark_architecture():
    cfg = get_recipe("ptbxl-benchmark").model
    assert cfg.layers == (3, 4, 23, 3) and cfg.expansion == 4 and cfg.widths == (64, 64, 64, 64)
    model = XResNet1d(71, cfg).eval()
    assert sum(isinstance(m, ResBlock) for m in model.modules()) == 33
    assert model.n_features == 256
    with torch.no_grad():
        assert model(torch.randn(1, 12, 64)).shape == (1, 71)
    # the benchmark's xresnet1d keeps 256 channels in every stage: about 1.9 M weights, not ImageNet's 34 M
    assert {b.branch[-1][0].out_channels for b in model.modules() if isinstance(b, ResBlock)} == {256}
    assert 1.8e6 < count_parameters(model) < 2.0e6
    # our default stays under 30 MB of float32 weights
    assert 4 * count_parameters(XResNet1d(71, RECIPES["default"].model)) < 30e6


@pytest.mark.parametrize("name", ["xresnet1d18", "xresnet1d50"])
def test_zero_init_makes_blocks_start_as_identity(name):
    torch.manual_seed(0)
    model = XResNet1d(5, XResNetConfig.named(name, widths=(8, 16, 32, 64)))
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    identity = [b for b in blocks if len(b.shortcut) == 0]
    assert identity and len(identity) < len(blocks)
    for train in (True, False):
        model.train(train)
        for block in blocks:
            ni = block.branch[0][0].in_channels
            x = torch.rand(4, ni, 50)  # non-negative, as after a ReLU
            with torch.no_grad():
                expected = x if block in identity else torch.relu(block.shortcut(x))
                torch.testing.assert_close(block(x), expected, rtol=0, atol=0)
    # the property comes from the zero-initialised last batch norm: undo it and blocks stop being identities
    block = identity[0]
    block.branch[-1][1].weight.data.fill_(1.0)
    x = torch.rand(4, block.branch[0][0].in_channels, 50)
    with torch.no_grad():
        assert not torch.allclose(block.eval()(x), x, atol=1e-3)


def test_recipes():
    bench, default = RECIPES["ptbxl-benchmark"], RECIPES["default"]
    assert (bench.train_window_s, bench.window_s, bench.stride_s, bench.aggregate) == (2.5, 2.5, 1.25, "max")
    assert (bench.lr, bench.weight_decay, bench.batch_size, bench.epochs, bench.select) == (1e-2, 1e-2, 128, 50, "final")
    assert bench.preprocessing == "scale" and [s.name for s in bench.base_pipeline().steps] == ["resample"]
    assert default.preprocessing == "scale" and [s.name for s in default.base_pipeline().steps] == ["resample"]
    assert [s.name for s in replace(default, preprocessing="standardize").base_pipeline().steps] == [
        "resample", "bandpass", "standardize"]
    # a 10-s record at 100 Hz: the recipe's 7 windows of 2.5 s every 1.25 s; the default's 4 that tile it
    assert len(window_starts(1000, int(bench.window_s * 100), int(bench.stride_s * 100))) == 7
    assert len(window_starts(1000, int(default.window_s * 100), int(default.stride_s * 100))) == 4
    assert (default.lr, default.batch_size, default.epochs, default.select, default.patience) == (
        1e-2, 128, 30, "final", None)
    assert (bench.aggregate, default.aggregate) == ("max", "mean")
    tc = default.train_config(seed=3)
    assert (tc.select, tc.patience, tc.seed, tc.lr) == ("final", None, 3, default.lr)
    with pytest.raises(Exception, match="unknown baseline recipe"):
        get_recipe("nope")


@pytest.mark.parametrize("extra, expected", [([], ("final", None)), (["--patience", "4"], ("best", 4))])
def test_train_cli_patience_turns_on_early_stopping(monkeypatch, tmp_path, extra, expected):
    seen = {}

    def fake_train(data, recipe, **kwargs):
        seen["recipe"] = recipe
        return tmp_path / "model"

    monkeypatch.setattr(baseline_train, "train_baseline", fake_train)
    parser = argparse.ArgumentParser()
    baseline_options.add_arguments(parser)
    assert baseline_train.run(parser.parse_args(["--data", "D", "--out", str(tmp_path)] + extra)) == 0
    assert (seen["recipe"].select, seen["recipe"].patience) == expected
    assert seen["recipe"].lr == get_recipe("default").lr


def test_recipe_option_offers_every_recipe():
    assert set(baseline_options.RECIPE_NAMES) == set(RECIPES)


def test_baseline_config_round_trip():
    cfg = get_recipe("ptbxl-benchmark")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert BaselineConfig.from_dict(d) == cfg
    assert XResNetConfig.from_dict(d["model"]) == cfg.model


def test_positive_weights():
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.float32)
    assert positive_weights(y, "none") is None
    # sqrt(4/1) = 2; sqrt(1/4) = 0.5 -> floor 1; no positives -> 1
    torch.testing.assert_close(positive_weights(y, "sqrt"), torch.tensor([2.0, 1.0, 1.0]))
    y_rare = np.zeros((401, 1), dtype=np.float32)
    y_rare[0] = 1
    assert positive_weights(y_rare, "sqrt").item() == 10.0  # sqrt(400) = 20, capped


def test_record_dataset_crops_shifts_and_scales():
    signals = np.arange(2 * 12 * 100, dtype=np.float32).reshape(2, 12, 100)
    y = np.eye(2, dtype=np.float32)
    torch.manual_seed(0)
    crops = RecordDataset(signals, y, 100.0, window=25, train=True)
    x, t = crops[1]
    assert x.shape == (12, 25) and torch.equal(t, torch.tensor([0.0, 1.0]))
    start = int(x[0, 0]) - 1200
    assert 0 <= start <= 75 and torch.equal(x, torch.from_numpy(signals[1, :, start:start + 25]))

    ones = signals + 1.0  # no zeros in the signal: every zero below is fill from a shift
    shifted = RecordDataset(ones, y, 100.0, window=100, train=True, max_shift=10)
    shifts = set()
    for _ in range(40):
        row = shifted[0][0][0].numpy()
        n_zero = int((row == 0).sum())
        assert n_zero <= 10
        if n_zero:
            lead = row[0] == 0  # zeros at the start: shifted right; at the end: shifted left
            assert (row[:n_zero] == 0).all() if lead else (row[-n_zero:] == 0).all()
            kept = row[n_zero:] if lead else row[:-n_zero]
            np.testing.assert_array_equal(kept, ones[0, 0, :100 - n_zero] if lead else ones[0, 0, n_zero:])
        shifts.add(n_zero if row[0] == 0 else -n_zero)
    assert len(shifts) > 5  # different shifts were drawn, both ways
    assert min(shifts) < 0 < max(shifts)

    scale = Pipeline((Scale(mean=[1.0] * 12, std=[2.0] * 12),))
    x, _ = RecordDataset(signals, y, 100.0, window=100, train=False, transform=scale)[0]
    torch.testing.assert_close(x, torch.from_numpy((signals[0] - 1.0) / 2.0))


@pytest.mark.slow
def test_train_baseline_end_to_end(ptbxl_dir, tmp_path):
    tiny = replace(get_recipe("ptbxl-benchmark"), model=XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 16),
                                                                       stem=(8, 8, 8), head_hidden=None),
                   batch_size=8, epochs=1)
    out = tmp_path / "run"
    path = train_baseline(ptbxl_dir, "superdiagnostic", tiny, out, folds_train=(1,), fold_val=9, seed=1,
                          cache_dir=tmp_path / "cache", max_records=24, progress=False)
    assert path == out / "model"
    config = json.loads((path / "config.json").read_text())
    assert config["kind"] == "baseline" and config["label_set"] == "superdiagnostic"
    assert config["labels"] == ["CD", "HYP", "MI", "NORM", "STTC"]
    steps = config["pipeline"]["steps"]
    assert [s["step"] for s in steps] == ["resample", "scale"] and len(steps[1]["mean"]) == 12
    facts = config["training"]
    assert (facts["n_train"], facts["seed"], facts["folds"], facts["fold_val"], facts["epochs_run"]) == (24, 1, [1], 9, 1)
    assert set(facts["label_prevalence"]) == set(config["labels"])
    assert np.asarray(facts["label_cooccurrence"]).shape == (5, 5)
    assert len(read_log(out)) == 1 and "val_macro_auroc" in read_log(out)[0]
    stage = json.loads((out / STAGE_FILE).read_text())
    assert stage["epochs_run"] == 1 and stage["wall_s"] > 0 and facts["wall_s"] == stage["wall_s"]
    with pytest.raises(ECGError, match="previous run"):
        train_baseline(ptbxl_dir, "superdiagnostic", tiny, out, folds_train=(1,), fold_val=9, seed=1,
                       cache_dir=tmp_path / "cache", max_records=24, progress=False)

    clf = load_classifier(out)  # a run directory resolves to its model/
    assert clf.labels == config["labels"] and clf.window_s == 2.5 and clf.aggregate == "max"
    p = clf.predict_proba(load_sample(3, sampling_rate=500))
    assert p.shape == (5,) and np.all((p >= 0) & (p <= 1))
