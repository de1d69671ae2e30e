"""The stage runner on a toy model: order, declared trainable parameters, timing facts, resume, provenance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ecglens.errors import ECGError
from ecglens.training import STAGE_FILE, Stage, StageRunner, provenance, run_training


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))


def _loss(net, batch):
    return nn.functional.mse_loss(net(batch[0]), batch[1]), {}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _stages(model: Toy, calls: list[str], snapshots: dict, restored: list[str]) -> list[Stage]:
    def trains(part: str):
        def declare(run):
            module = getattr(model, part)
            for p in module.parameters():
                p.requires_grad_(True)
            return model  # the whole model runs; only ``part`` may move

        return declare

    def fit(run):
        calls.append(run.name)
        snapshots[run.name] = (_snapshot(model), None)
        result = run.fit(_loss, _data(), run.train_config(batch_size=8))
        snapshots[run.name] = (snapshots[run.name][0], _snapshot(model))
        return {"final_loss": result.history[-1]["train_loss"]}

    def count(run):
        calls.append(run.name)
        return {"seen": sorted(run.facts)}

    def save(run):
        torch.save(model.state_dict(), run.dir / "weights.pt")

    def restore(run):
        restored.append(run.name)
        model.load_state_dict(torch.load(run.dir / "weights.pt"))

    return [Stage("first", fit, trains=trains("a"), epochs=2, lr=0.05, save=save, restore=restore),
            Stage("between", count),
            Stage("second", fit, trains=trains("b"), epochs=2, lr=0.05, select="final", save=save, restore=restore)]


def _runner(out, resume=False, calls=None, snapshots=None, restored=None):
    torch.manual_seed(0)
    model = Toy()
    calls, snapshots, restored = ([] if calls is None else calls), ({} if snapshots is None else snapshots), \
        ([] if restored is None else restored)
    return model, StageRunner(out, _stages(model, calls, snapshots, restored), model=model, resume=resume,
                              progress=False)


def test_stages_run_in_order_and_record_their_facts(tmp_path):
    calls: list[str] = []
    _, runner = _runner(tmp_path / "run", calls=calls)
    facts = runner.run()
    assert calls == ["first", "between", "second"] and list(facts) == calls
    assert facts["between"]["seen"] == ["first"]  # a stage sees the facts of the stages before it
    for name in calls:
        marker = json.loads((tmp_path / "run" / name / STAGE_FILE).read_text())
        assert marker == facts[name]
        assert marker["wall_s"] > 0 and marker["peak_rss_mib"] > 10
    assert (tmp_path / "run" / "first" / "train_log.jsonl").is_file()  # the trainer ran in the stage's directory


def test_only_the_declared_parameters_train(tmp_path):
    snapshots: dict = {}
    model, runner = _runner(tmp_path / "run", snapshots=snapshots)
    runner.run()
    for stage, moved, kept in (("first", "a.", "b."), ("second", "b.", "a.")):
        before, after = snapshots[stage]
        assert all(not torch.equal(before[k], after[k]) for k in before if k.startswith(moved)), stage
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(kept)), stage
    # each declaration starts from a frozen model: "second" left a frozen
    assert not any(p.requires_grad for p in model.a.parameters())


def test_resume_skips_finished_stages_and_restores_them(tmp_path):
    out = tmp_path / "run"
    _, runner = _runner(out)
    first_facts = runner.run()
    (out / "second" / STAGE_FILE).unlink()  # as if killed before "second" finished
    calls: list[str] = []
    restored: list[str] = []
    _, runner = _runner(out, resume=True, calls=calls, restored=restored)
    facts = runner.run()
    assert calls == ["second"] and restored == ["first"]
    assert facts["first"] == first_facts["first"]
    assert (out / "second" / STAGE_FILE).is_file()
    calls.clear()
    _, runner = _runner(out, resume=True, calls=calls)
    runner.run()
    assert calls == []
    with pytest.raises(ECGError, match="previous run"):
        _runner(out)[1].run()


def test_without_an_output_directory_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    _, runner = _runner(None, calls=calls)
    assert set(runner.run()) == {"first", "between", "second"} and calls == ["first", "between", "second"]
    assert list(tmp_path.iterdir()) == []


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="epochs and learning rate"):
        Stage("x", dict, trains=lambda run: nn.Linear(1, 1))
    with pytest.raises(ValueError, match="select"):
        Stage("x", dict, select="last")
    with pytest.raises(ValueError, match="main_only stages must come last"):
        StageRunner(None, [Stage("a", dict, main_only=True), Stage("b", dict)])
    with pytest.raises(ValueError, match="repeat"):
        StageRunner(None, [Stage("a", dict), Stage("a", dict)])
    with pytest.raises(ValueError, match="single stage"):
        StageRunner(None, [Stage("a", dict, directory=""), Stage("b", dict)])


def test_a_flat_stage_uses_the_run_directory(tmp_path):
    runner = StageRunner(tmp_path / "run", [Stage("only", lambda run: {"dir": str(run.dir)}, directory="")])
    assert runner.run()["only"]["dir"] == str(tmp_path / "run")
    assert (tmp_path / "run" / STAGE_FILE).is_file()


def test_provenance():
    y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    block = provenance(3, {"root": "/data"}, ["A", "B"], y, folds=[1, 2])
    assert block["label_prevalence"] == {"A": 0.75, "B": 0.25}
    assert (block["seed"], block["folds"], block["data"], block["world_size"]) == (3, [1, 2], {"root": "/data"}, 1)
    assert block["torch_version"] == torch.__version__ and block["created"].endswith("+00:00")
    assert json.loads(json.dumps(block)) == block


def test_run_training_prints_the_model_path(capsys, tmp_path):
    assert run_training(lambda: tmp_path / "model") == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "model")
    with pytest.raises(RuntimeError, match="boom"):
        run_training(lambda: (_ for _ in ()).throw(RuntimeError("boom")))


def test_common_training_options_are_torch_free():
    import subprocess
    import sys

    code = ("import sys; from ecglens.cli import build_parser\n"
            "for family in ('baseline', 'protoecgnet', 'factorecg', 'beat-blackbox', 'qlst'):\n"
            "    build_parser(['train', family]).parse_args(['train', family, '--data', 'D', '--out', 'R']\n"
            "        + (['--vae', 'V', '--classifier', 'C'] if family == 'qlst' else []))\n"
            "print([m for m in ('torch', 'numpy', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
