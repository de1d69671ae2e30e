"""DDP under torchrun (2 CPU processes, gloo) reproduces a single-process run with the same global batch.

One process with batch 8 and two with batch 4 each see the same samples per
step (DistributedSampler deals one permutation out rank by rank) and DDP
averages the two gradients, so losses, validation metric and weights agree up
to float rounding (relative 1e-5). The model has no batch norm or dropout, so
nothing depends on the per-process batch. Each rank is given its own run
directory, which shows that only rank 0 writes. The same script runs the stage
runner (a stage on every rank, then one on rank 0 only) and checks that
``cleanup`` joins the threads of ecglens's own process group, whose late
teardown used to abort a rank at exit.
"""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from ecglens.training import Stage, StageRunner, TrainConfig, Trainer, Validation, cleanup, init_distributed

    out_dir, batch_size = sys.argv[1], int(sys.argv[2])
    dist = init_distributed()
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 6, generator=g), torch.randn(6, 2, generator=g)
    train = TensorDataset(x, (x @ w > 0).float())
    vx = torch.randn(13, 6, generator=g)  # 13: the two ranks get unequal shares
    val = TensorDataset(torch.arange(13), vx, (vx @ w > 0).float())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))

    def loss_fn(m, b):
        return nn.functional.binary_cross_entropy_with_logits(m(b[0]), b[1]), {}

    def outputs(m, b):
        i, xx, yy = b
        return {"index": i, "loss": nn.functional.binary_cross_entropy_with_logits(m(xx), yy, reduction="none").mean(1)}

    def metric(a):
        assert (a["index"] == np.arange(13)).all(), a["index"]  # gathered back in dataset order
        return {"val_loss": float(a["loss"].mean()), "val_n": float(len(a["loss"]))}

    cfg = TrainConfig(epochs=3, batch_size=batch_size, lr=0.05, select="best", patience=5, progress=False, seed=1)
    result = Trainer(model, loss_fn, train, cfg, run_dir=os.path.join(out_dir, f"rank{dist.rank}"),
                     validation=Validation(val, outputs, metric, name="val_loss", mode="min")).fit()

    torch.manual_seed(0)  # the stage runner: a training stage on every rank, then one on rank 0 only
    staged = nn.Sequential(nn.Linear(6, 2))

    def fit(run):
        return {"loss": run.fit(loss_fn, train, run.train_config(batch_size=batch_size)).history[-1]["train_loss"]}

    stages = [Stage("fit", fit, trains=lambda run: staged, epochs=2, lr=0.05),
              Stage("summary", lambda run: {"world": dist.world_size}, main_only=True)]
    facts = StageRunner(os.path.join(out_dir, "stages"), stages).run()
    threads = len(os.listdir("/proc/self/task"))
    cleanup()
    with open(os.path.join(out_dir, f"result{dist.rank}.json"), "w") as fh:
        json.dump({"world": dist.world_size, "history": result.history, "stages": facts,
                   "threads_joined": threads - len(os.listdir("/proc/self/task")),
                   "weights": {k: v.tolist() for k, v in model.state_dict().items()}}, fh)
''')


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path, run_clean):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir()
    multi.mkdir()
    run_clean([sys.executable, str(script), str(single), "8"], tmp_path)
    run_clean([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          str(script), str(multi), "4"], tmp_path)

    one = json.loads((single / "result0.json").read_text())
    r0 = json.loads((multi / "result0.json").read_text())
    r1 = json.loads((multi / "result1.json").read_text())
    assert (one["world"], r0["world"], r1["world"]) == (1, 2, 2)
    # cleanup() really frees the group of ecglens's own collectives (its gloo threads are joined), although
    # DDP keeps the default group alive: no collective is released while the interpreter shuts down
    assert r0["threads_joined"] >= 2 and r1["threads_joined"] >= 2

    for key in ("train_loss", "val_loss"):
        ref = [h[key] for h in one["history"]]
        np.testing.assert_allclose([h[key] for h in r0["history"]], ref, rtol=1e-5)
        assert [h[key] for h in r1["history"]] == [h[key] for h in r0["history"]]  # broadcast: identical
    assert [h["records"] for h in r0["history"]] == [64, 64, 64]
    assert [h["val_n"] for h in r0["history"]] == [13.0, 13.0, 13.0]
    assert [h["best"] for h in r0["history"]] == [h["best"] for h in one["history"]]
    for k, v in one["weights"].items():
        np.testing.assert_allclose(r0["weights"][k], v, rtol=1e-5, atol=1e-6)
        assert r1["weights"][k] == r0["weights"][k]  # DDP keeps the replicas bit-identical

    assert list(r0["stages"]) == ["fit", "summary"] and list(r1["stages"]) == ["fit"]  # rank 1 stops before it
    assert r0["stages"]["summary"]["world"] == 2 and r1["stages"]["fit"]["loss"] == r0["stages"]["fit"]["loss"]
    np.testing.assert_allclose(r0["stages"]["fit"]["loss"], one["stages"]["fit"]["loss"], rtol=1e-5)
    assert json.loads((multi / "stages" / "summary" / "stage.json").read_text())["world"] == 2

    assert {p.name for p in (multi / "rank0").iterdir()} == {"best", "last", "train_log.jsonl"}
    assert not (multi / "rank1").exists()
    assert len((multi / "rank0" / "train_log.jsonl").read_text().splitlines()) == 3
