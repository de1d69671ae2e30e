"""The model-family registry: every family declared once, read lazily; a new family is one module + one line."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import ecglens
from ecglens.cli import main
from ecglens.errors import ConfigError, ECGError
from ecglens.models import registry
from ecglens.samples import load_sample


@pytest.fixture
def toy_registered(monkeypatch):
    """The registry with the toy family (tests/toy_family.py) added as its one extra line."""
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, "toy_family"))
    registry.families.cache_clear()
    yield
    registry.families.cache_clear()


def test_every_shipped_model_has_a_declared_kind():
    kinds = registry.checkpoint_kinds()
    for name in ecglens.list_models():
        config = json.loads((ecglens.load_model(name).directory / "config.json").read_text())
        assert config["kind"] in kinds
    assert {f.name for f in registry.families()} == {"baseline", "protoecgnet", "factorecg", "qlst"}
    assert set(registry.train_commands()) == {"baseline", "protoecgnet", "factorecg", "beat-blackbox", "qlst"}


def test_references_resolve():
    for fam in registry.families():
        for kind in fam.kinds:
            assert callable(registry.resolve(kind.load))
        for command in fam.train:
            assert callable(registry.resolve(command.add_arguments)) and callable(registry.resolve(command.run))
            assert callable(registry.resolve(command.function))
        for ref in fam.configs:
            assert isinstance(registry.resolve(ref), type)


def test_family_declarations_import_no_torch():
    code = ("import sys; from ecglens.models.registry import families, train_commands, resolve\n"
            "[resolve(c.add_arguments) for c in train_commands().values()]\n"
            "print(len(families()), 'torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["4", "False", "False"]


def test_unknown_family_and_kind_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        registry.get_family("nope")
    with pytest.raises(ConfigError, match="no model family loads checkpoint kind 'nope'"):
        registry.get_kind("nope", "x/config.json")


def test_a_toy_family_plugs_in_everywhere(toy_registered, tmp_path, capsys):
    assert registry.get_family("toy").kinds[0].name == "toy"
    assert main(["train", "toy", "--out", str(tmp_path / "toy")]) == 0
    model = ecglens.load_model(tmp_path / "toy")
    assert model.kind.name == "toy" and model.labels == ["NORM", "AFIB"]
    prediction = model.predict(load_sample(172))
    assert prediction.probabilities.shape == (1, 2) and np.isfinite(prediction.probabilities).all()
    with pytest.raises(ECGError, match="no explainer"):
        model.explain(load_sample(172))
    assert main(["models"]) == 0
    assert "toy" in capsys.readouterr().out


def test_qlst_cannot_predict_and_says_what_to_use():
    model = ecglens.load_model("qlst")
    assert not model.can_predict and model.can_explain
    with pytest.raises(ECGError, match="predict with the classifier it was trained on"):
        model.predict(load_sample(172))
    with pytest.raises(ConfigError, match="does not predict"):
        ecglens.models.load_classifier("qlst")
