"""Checkpoint integrity: a save killed at any step leaves the previous checkpoint or none; damaged or
non-finite checkpoints are refused with a ConfigError naming the file."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ecglens.errors import ConfigError
from ecglens.training import load_checkpoint, load_config, save_checkpoint

STATE = "training_state.pt"


def _save(path, version: int):
    return save_checkpoint(path, {"w": torch.full((3,), float(version))}, {"kind": "custom", "version": version},
                           extra_files={STATE: {"epoch": version}})


def _found(path):
    """What a reader finds at ``path``: None, or the version each of the three files holds."""
    if not path.exists():
        return None
    state, config = load_checkpoint(path)
    extra = torch.load(path / STATE, weights_only=True)
    return int(state["w"][0]), config["version"], extra["epoch"]


def test_every_step_of_a_save_leaves_the_previous_checkpoint_or_none(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    _save(path, 1)
    seen = []

    def observed(real):
        def step(*args):
            seen.append(_found(path))  # the state a kill right here would leave
            return real(*args)
        return step

    monkeypatch.setattr(os, "fsync", observed(os.fsync))
    monkeypatch.setattr(os, "replace", observed(os.replace))
    _save(path, 2)
    monkeypatch.undo()
    assert len(seen) >= 7  # three files and their folder fsynced, two renames, the parent fsynced
    phases = [s for k, s in enumerate(seen) if k == 0 or s != seen[k - 1]]
    assert phases == [(1, 1, 1), None, (2, 2, 2)]  # never a partial or mixed checkpoint
    assert _found(path) == (2, 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_killed_save_keeps_the_previous_checkpoint_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "ckpt"
    _save(path, 1)
    # os._exit skips every handler, like SIGKILL; here the new checkpoint is complete but not yet in place
    script = textwrap.dedent(f"""
        import os, pathlib, torch
        from ecglens.training import save_checkpoint
        os.replace = lambda *a: os._exit(9)
        save_checkpoint(pathlib.Path({str(path)!r}), {{"w": torch.full((3,), 2.0)}}, {{"kind": "custom", "version": 2}},
                        extra_files={{{STATE!r}: {{"epoch": 2}}}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert _found(path) == (1, 1, 1)
    assert [p.name.startswith(".ckpt.tmp-") for p in tmp_path.iterdir()].count(True) == 1
    _save(path, 3)
    assert _found(path) == (3, 3, 3) and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.fixture
def ckpt(tmp_path):
    return _save(tmp_path / "ckpt", 1)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "config.json is unreadable or not JSON"),
    (b"\xff\xfe\x00", "config.json is unreadable or not JSON"),
    ("[1, 2]", "config.json holds a JSON list, not an object"),
    ('"text"', "config.json holds a JSON str, not an object"),
    ("{}", "config.json does not name the model 'kind'"),
])
def test_bad_config_is_a_config_error(ckpt, content, problem):
    config = ckpt / "config.json"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=problem) as err:
        load_checkpoint(ckpt)
    assert err.value.path == str(ckpt)
    with pytest.raises(ConfigError, match=problem):
        load_config(ckpt)


@pytest.mark.parametrize("damage, problem", [
    (lambda w: w.unlink(), "model.safetensors is missing"),
    (lambda w: w.write_bytes(b""), "model.safetensors is corrupt or unreadable"),
    (lambda w: w.write_bytes(w.read_bytes()[:40]), "model.safetensors is corrupt or unreadable"),
    (lambda w: w.write_bytes(b"\xff" * 200), "model.safetensors is corrupt or unreadable"),
])
def test_missing_or_unreadable_weights_are_a_config_error(ckpt, damage, problem):
    damage(ckpt / "model.safetensors")
    with pytest.raises(ConfigError, match=problem):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad):
    weights = {"head.bias": torch.zeros(4), "head.weight": torch.ones(2, 5), "steps": torch.tensor([7])}
    weights["head.weight"][1, 3] = bad
    save_checkpoint(tmp_path / "c", weights, {"kind": "custom"})
    with pytest.raises(ConfigError, match=r"model\.safetensors: tensor 'head\.weight' holds 1 NaN or inf value\(s\)"):
        load_checkpoint(tmp_path / "c")


def test_finite_half_precision_and_integer_weights_load(tmp_path):
    weights = {"a": torch.ones(3, dtype=torch.float16), "n": torch.tensor([2**40]),
               "b": torch.zeros(2, dtype=torch.bfloat16)}
    save_checkpoint(tmp_path / "c", weights, {"kind": "custom"})
    state, _ = load_checkpoint(tmp_path / "c")
    assert sorted(state) == ["a", "b", "n"] and state["n"].item() == 2**40
