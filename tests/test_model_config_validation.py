"""Bad model configs and outputs interrupted mid-write: one documented error naming the file, never a partial file."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

import ecglens
from ecglens.cli import main
from ecglens.errors import ConfigError
from ecglens.pretrained import pretrained_dir
from ecglens.samples import sample_path
from ecglens.training import load_checkpoint, save_checkpoint


@pytest.fixture
def baseline_copy(tmp_path):
    target = tmp_path / "baseline"
    shutil.copytree(pretrained_dir("baseline"), target)
    return target


def _edit(directory, change):
    config = json.loads((directory / "config.json").read_text())
    change(config)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("field, value, message", [
    ("aggregate", "median", "aggregate must be one of"),
    ("window_s", math.nan, "window_s must be a positive finite number"),
    ("window_s", 0.0, "window_s"),
    ("stride_s", -1.0, "stride_s must be a positive finite number"),
    ("sampling_rate", 0.0, "sampling_rate must be a positive finite number"),
    ("model", {"widths": [-32, 64, 128, 256]}, "widths must be positive"),
    ("no_such_field", 1, "unknown field"),
])
def test_invalid_recipe_values_name_the_checkpoint(baseline_copy, field, value, message, capsys):
    def change(config):
        if field == "model":
            config["recipe"]["model"].update(value)
        else:
            config["recipe"][field] = value
    _edit(baseline_copy, change)
    with pytest.raises(ConfigError, match=message) as info:
        ecglens.load_model(baseline_copy)
    assert str(baseline_copy) in str(info.value)
    assert main(["predict", str(baseline_copy), str(sample_path(172)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecglens: error: ") and "Traceback" not in err and message.split()[0] in err


@pytest.mark.parametrize("key, value, message", [
    ("thresholds", 1.5, "thresholds must be probabilities"),
    ("a", -1.0, "slopes must be positive"),
    ("b", math.inf, "intercepts finite"),
])
def test_invalid_calibration_values_are_refused(baseline_copy, key, value, message):
    from ecglens.calibration import Calibration

    def change(config):
        labels = config["labels"]
        k = len(labels)
        section = Calibration(labels, np.ones(k), np.zeros(k), np.full(k, 0.5), np.ones(k, bool)).to_dict()
        section[key]["AFIB"] = value
        config["calibration"] = section
    _edit(baseline_copy, change)
    with pytest.raises(ConfigError, match=message) as info:
        ecglens.load_model(baseline_copy)
    assert str(baseline_copy) in str(info.value)


def test_nan_weights_are_refused_not_scored(baseline_copy, capsys):
    state, config = load_checkpoint(baseline_copy)
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_checkpoint(baseline_copy, state, config)
    assert main(["predict", str(baseline_copy), str(sample_path(172)), "--no-progress"]) == 2
    assert f"'{name}'" in capsys.readouterr().err


def test_interrupted_predict_output_leaves_no_partial_file(tmp_path, monkeypatch):
    import csv

    out = tmp_path / "out.csv"
    real_writer = csv.writer

    class Dies:
        def __init__(self, fh, **kw):
            self.inner, self.rows = real_writer(fh, **kw), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows == 10:
                raise KeyboardInterrupt  # as a kill mid-write would
            self.inner.writerow(row)

    monkeypatch.setattr(csv, "writer", Dies)
    assert main(["predict", "baseline", str(sample_path(172)), "-o", str(out), "--no-progress"]) == 130
    assert not out.exists() and not list(tmp_path.iterdir())
