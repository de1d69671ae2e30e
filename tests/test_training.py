"""The generic Trainer on tiny synthetic problems: learning, early stopping, resume, logs."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ecglens.errors import ECGError
from ecglens.training import LOG_FILE, TrainConfig, Trainer, Validation, load_checkpoint, read_log, seed_everything
from ecglens.training.schedule import make_optimizer, make_scheduler




def separable(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).float()[:, None]
    return TensorDataset(x, y)


class NoisyData(Dataset):
    """Items with random jitter drawn from torch's global generator (like an augmentation)."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x + 0.1 * torch.randn(x.shape), y


def mlp(dropout=0.0, seed=0):
    seed_everything(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def bce(model, batch):
    x, y = batch
    logits = model(x)
    return nn.functional.binary_cross_entropy_with_logits(logits, y), {"acc": ((logits > 0).float() == y).float().mean()}


def accuracy_validation(data):
    return Validation(data, lambda m, b: {"logit": m(b[0]), "y": b[1]},
                      lambda a: float(((a["logit"] > 0) == (a["y"] > 0)).mean()), name="val_acc")


def test_loss_decreases_and_learns():
    data = separable()
    cfg = TrainConfig(epochs=8, batch_size=8, lr=0.05, progress=False)
    result = Trainer(mlp(), bce, data, cfg, validation=accuracy_validation(separable(seed=1))).fit()
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["val_acc"] >= 0.9
    assert result.history[-1]["train_acc"] >= 0.9
    assert result.epochs_run == 8 and not result.stopped_early


def scripted_validation(scores):
    """A validation that returns ``scores`` in turn and records the weights it saw each time."""
    scripted, snapshots = iter(scores), []

    def outputs(model, batch):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"y": batch[1]}

    return Validation(separable(8), outputs, lambda a: next(scripted), name="score"), snapshots


def test_early_stopping_restores_best_weights(tmp_path):
    validation, snapshots = scripted_validation([0.5, 0.8, 0.6, 0.55, 0.9, 0.9])
    cfg = TrainConfig(epochs=6, batch_size=8, lr=0.05, select="best", patience=2, progress=False)
    model = mlp()
    result = Trainer(model, bce, separable(), cfg, validation=validation, run_dir=tmp_path / "run").fit()
    assert result.stopped_early and result.epochs_run == 4
    assert (result.best_epoch, result.best_metric) == (2, 0.8)
    assert [h["best"] for h in result.history] == [True, True, False, False]
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)  # epoch 2's weights...
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)  # ...not epoch 4's
    best, cfg_best = load_checkpoint(tmp_path / "run" / "best")
    assert all(torch.equal(final[k], best[k]) for k in final)
    assert cfg_best["training"]["best_epoch"] == 2 and cfg_best["training"]["metric"] == "score"


def test_final_mode_keeps_last_weights():
    validation, snapshots = scripted_validation([0.9, 0.1, 0.1])
    model = mlp()
    result = Trainer(model, bce, separable(), TrainConfig(epochs=3, batch_size=8, progress=False),
                     validation=validation).fit()
    assert result.best_epoch == 1 and result.epochs_run == 3 and result.history[-1]["score"] == 0.1
    assert result.model is model
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[2].items())
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[0].items())


class Killed(Exception):
    pass


def _resumable_run(run_dir, kill_at_step=None, init_seed=0):
    steps = {"n": 0}

    def loss(model, batch):
        steps["n"] += 1
        if kill_at_step is not None and steps["n"] == kill_at_step:
            raise Killed
        return bce(model, batch)

    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.03, select="best", progress=False, seed=3)
    model = mlp(dropout=0.3, seed=init_seed)
    trainer = Trainer(model, loss, NoisyData(separable(40)), cfg, validation=accuracy_validation(separable(16, seed=2)),
                      run_dir=run_dir)
    return trainer, model


def test_resume_matches_uninterrupted_run(tmp_path):
    straight, model_a = _resumable_run(tmp_path / "a")
    straight.fit()

    steps_per_epoch = 5  # 40 samples, batch 8
    killed, _ = _resumable_run(tmp_path / "b", kill_at_step=2 * steps_per_epoch + 2)
    with pytest.raises(Killed):
        killed.fit()
    assert [r["epoch"] for r in read_log(tmp_path / "b")] == [1, 2]

    # a fresh process: different initial weights, which resume must overwrite
    resumed, model_b = _resumable_run(tmp_path / "b", init_seed=99)
    result = resumed.fit(resume=True)
    assert result.epochs_run == 4
    for k, v in model_a.state_dict().items():
        torch.testing.assert_close(model_b.state_dict()[k], v, rtol=0, atol=1e-6)
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["epoch"] for r in log_b] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]
    assert [r["val_acc"] for r in log_a] == [r["val_acc"] for r in log_b]
    assert [h["train_loss"] for h in result.history] == [r["train_loss"] for r in log_a]
    last_a, _ = load_checkpoint(tmp_path / "a" / "last")
    last_b, _ = load_checkpoint(tmp_path / "b" / "last")
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)

    # resuming a finished run changes nothing and returns the same selected weights
    again, model_c = _resumable_run(tmp_path / "b", init_seed=5)
    assert again.fit(resume=True).epochs_run == 4
    assert all(torch.equal(model_c.state_dict()[k], v) for k, v in model_b.state_dict().items())


def test_refuses_to_overwrite_or_resume_with_other_settings(tmp_path):
    data = separable(16)
    Trainer(mlp(), bce, data, TrainConfig(epochs=1, batch_size=8, progress=False), run_dir=tmp_path).fit()
    with pytest.raises(ECGError, match="previous run"):
        Trainer(mlp(), bce, data, TrainConfig(epochs=1, batch_size=8, progress=False), run_dir=tmp_path).fit()
    with pytest.raises(ECGError, match="lr"):
        Trainer(mlp(), bce, data, TrainConfig(epochs=1, batch_size=8, lr=0.5, progress=False),
                run_dir=tmp_path).fit(resume=True)


def test_log_file_contents(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=5, lr=0.01, progress=False, stage="stage-a")
    Trainer(mlp(), bce, separable(23), cfg, validation=accuracy_validation(separable(7)), run_dir=tmp_path).fit()
    lines = (tmp_path / LOG_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert r["stage"] == "stage-a"
        assert r["records"] == 23
        assert r["records_per_s"] > 0
        assert 0.0 <= r["val_acc"] <= 1.0 and r["train_loss"] > 0
        assert {"train_acc", "lr", "seconds", "best"} <= set(r)
    # the lr of each epoch's last step: one-cycle ends at lr / (25 * 1e4)
    assert records[-1]["lr"] == pytest.approx(0.01 / 25 / 1e4) and records[0]["lr"] > 1e-3


def test_same_seed_same_result_and_seed_matters():
    def run(seed):
        cfg = TrainConfig(epochs=2, batch_size=8, lr=0.02, progress=False, seed=seed)
        return [h["train_loss"] for h in Trainer(mlp(dropout=0.2), bce, NoisyData(separable()), cfg).fit().history]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_param_groups_get_their_own_peak_lr():
    model = mlp()
    groups = [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[3].parameters(), "lr": 0.001}]
    opt = make_optimizer(groups, "adamw", lr=0.01, weight_decay=0.0)
    sched = make_scheduler(opt, "onecycle", total_steps=10, pct_start=0.5)
    for _ in range(4):  # the peak of the cycle: step pct_start * total_steps - 1
        opt.step()
        sched.step()
    assert [round(g["lr"], 6) for g in opt.param_groups] == [0.1, 0.001]


def test_frozen_parameters_stay_put():
    model = mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    before = model[0].weight.clone()
    Trainer(model, bce, separable(16), TrainConfig(epochs=1, batch_size=8, progress=False)).fit()
    assert torch.equal(model[0].weight, before)


def test_non_finite_loss_is_an_error():
    def bad(model, batch):
        return model(batch[0]).sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="epoch 1"):
        Trainer(mlp(), bad, separable(8), TrainConfig(epochs=1, batch_size=8, progress=False)).fit()


def test_records_per_epoch_counts_every_sample_once():
    seen = []

    def loss(model, batch):
        seen.extend(batch[0][:, 0].tolist())
        return bce(model, batch)

    data = separable(21)
    Trainer(mlp(), loss, data, TrainConfig(epochs=1, batch_size=4, progress=False)).fit()
    assert sorted(seen) == sorted(data.tensors[0][:, 0].tolist())


def test_validation_metric_errors_surface():
    validation = Validation(separable(4), lambda m, b: {"y": b[1]}, lambda a: {"other": 1.0}, name="score")
    with pytest.raises(RuntimeError, match="without 'score'"):
        Trainer(mlp(), bce, separable(8), TrainConfig(epochs=1, batch_size=8, progress=False), validation=validation).fit()


def test_a_last_batch_of_one_sample_is_dropped_so_batch_norm_can_train(tmp_path):
    """9 samples at batch 4 would leave a lone sample that BatchNorm cannot normalise in training mode."""
    from torch import nn
    from torch.utils.data import TensorDataset

    from ecglens.training import TrainConfig, Trainer

    data = TensorDataset(torch.randn(9, 3), torch.rand(9, 1).round())
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))

    def loss_fn(net, batch):
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(net(x), y), {}

    result = Trainer(model, loss_fn, data, TrainConfig(epochs=1, batch_size=4, progress=False)).fit()
    assert result.model is not None


def test_epoch_end_runs_after_each_epoch_before_validation():
    calls = []

    def epoch_end(model, epoch):
        with torch.no_grad():
            model[0].bias.zero_()  # visible to the validation that follows
        calls.append(epoch)

    def check(arrays):
        assert calls, "validation ran before epoch_end"
        return float(len(calls))

    val = Validation(separable(seed=1), lambda m, b: {"bias": m[0].bias.detach().abs().sum().expand(len(b[0]))},
                     lambda a: (check(a), float(a["bias"].max()))[1], name="val_bias_abs", mode="min")
    result = Trainer(mlp(), bce, separable(), TrainConfig(epochs=3, batch_size=16, progress=False),
                     validation=val, epoch_end=epoch_end).fit()
    assert calls == [1, 2, 3]
    assert [h["val_bias_abs"] for h in result.history] == [0.0, 0.0, 0.0]


def test_keep_start_returns_the_starting_weights_when_no_epoch_beats_them(tmp_path):
    validation, _ = scripted_validation([0.9, 0.5, 0.7])  # epoch 0 (the start), then two worse epochs
    model = mlp()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, select="best", keep_start=True, progress=False)
    result = Trainer(model, bce, separable(), cfg, validation=validation, run_dir=tmp_path / "run").fit()
    assert (result.best_epoch, result.best_metric, result.epochs_run) == (0, 0.9, 2)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())
    assert [r["epoch"] for r in read_log(tmp_path / "run")] == [0, 1, 2]


def test_keep_start_still_takes_a_better_epoch():
    validation, snapshots = scripted_validation([0.5, 0.9, 0.7])
    model = mlp()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, select="best", keep_start=True, progress=False)
    result = Trainer(model, bce, separable(), cfg, validation=validation).fit()
    assert (result.best_epoch, result.best_metric) == (1, 0.9)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[1].items())
