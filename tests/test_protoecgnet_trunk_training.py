"""ProtoECGNet trained on a trained baseline's body (``train_protoecgnet(trunk_from=...)``): tiny runs on PTB-XL."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ecglens.errors import ConfigError
from ecglens.models import load_classifier
from ecglens.models.baseline.config import get_recipe
from ecglens.models.baseline.train import train_baseline
from ecglens.models.protoecgnet import options
from ecglens.models.protoecgnet.heads import explanation_shares
from ecglens.models.protoecgnet.losses import classification_loss, head_targets
from ecglens.models.protoecgnet.recipe import ProtoTrainConfig, TrunkRecipe, recipe_with_prototypes
from ecglens.models.protoecgnet.train import train_protoecgnet
from ecglens.models.protoecgnet.trunk_stages import (
    TRUNK_STAGES,
    teacher_probabilities,
    trunk_network,
)
from ecglens.models.xresnet1d import XResNetConfig
from ecglens.training import load_checkpoint

FOLDS = {"folds_train": (1,), "fold_val": 9}
N = 24


def tiny_trunk_recipe(**kw) -> ProtoTrainConfig:
    trunk = TrunkRecipe(epochs=1, refine_epochs=1, prototype_channels=4, stages={"morphology": 1},
                        head_l1=(1e-3, 0.0))
    return ProtoTrainConfig(batch_size=8, fusion_epochs=2, max_records=N, trunk=trunk, **kw)


@pytest.fixture(scope="module")
def baseline(ptbxl_dir, tmp_path_factory):
    tiny = replace(get_recipe("ptbxl-benchmark"), model=XResNetConfig(layers=(1, 1), expansion=1, widths=(8, 16),
                                                                       stem=(8, 8, 8), head_hidden=None),
                   batch_size=8, epochs=1)
    root = tmp_path_factory.mktemp("trunk-baseline")
    return train_baseline(ptbxl_dir, "superdiagnostic", tiny, root / "run", seed=0, cache_dir=root / "cache",
                          max_records=N, progress=False, **FOLDS)


@pytest.fixture(scope="module")
def trained(ptbxl_dir, baseline, tmp_path_factory):
    root = tmp_path_factory.mktemp("trunk-proto")
    path = train_protoecgnet(ptbxl_dir, "superdiagnostic", root / "run", tiny_trunk_recipe(), cache_dir=root / "cache",
                             progress=False, trunk_from=baseline, **FOLDS)
    return root, path


@pytest.mark.slow
def test_the_five_stages_end_in_a_self_describing_related_model(trained, baseline):
    root, path = trained
    assert path == root / "run" / "model"
    for stage in TRUNK_STAGES:
        assert (root / "run" / stage / "stage.json").is_file()
    _, config = load_checkpoint(path)
    assert config["head"] == "related fusion" and config["model"]["fusion"] == "related"
    assert config["training"]["trunk_from"] == str(baseline)
    assert ProtoTrainConfig.from_dict(config["recipe"]).trunk == tiny_trunk_recipe().trunk
    base_steps = [s["step"] for s in json.loads((baseline / "config.json").read_text())["pipeline"]["steps"]]
    assert [s["step"] for s in config["pipeline"]["steps"]] == base_steps  # the baseline's preprocessing
    assert set(config["training"]["wall_s"]) == set(TRUNK_STAGES)
    log = [json.loads(line) for line in (root / "run" / "finetune" / "train_log.jsonl").read_text().splitlines()]
    assert any("train_distill" in row for row in log)  # the baseline taught
    finetune, projection = (json.loads((root / "run" / s / "stage.json").read_text()) for s in ("finetune", "projection"))
    # projection is judged on the fused logits, the ones the fine-tune selected its epoch by
    assert projection["pre_projection"]["val_macro_auroc"] == pytest.approx(finetune["val_macro_auroc"], abs=1e-6)


@pytest.mark.slow
def test_the_head_kept_is_the_best_candidate_within_the_explanation_minima(trained):
    root, path = trained
    head = json.loads((root / "run" / "head" / "stage.json").read_text())
    rows = head["candidates"]
    assert set(rows) == {"l1 0.001", "l1 0"}
    meeting = [n for n, r in rows.items() if r["meets_minima"]]
    for r in rows.values():
        assert r["meets_minima"] == (r["own_share_median"] >= 0.5 and r["top3_coverage_median"] >= 0.5)
    if meeting:
        assert head["kept"] == max(meeting, key=lambda n: rows[n]["val_macro_auroc"])
    state, _ = load_checkpoint(path)
    kept = rows[head["kept"]]
    assert (state["fusion.weight"] != 0).sum().item() > 0 and kept["val_macro_auroc"] == head["val_macro_auroc"]


@pytest.mark.slow
def test_the_trained_model_loads_alone_and_its_logits_are_listed_contributions(trained, ptbxl_dir):
    _, path = trained
    clf = load_classifier(path, device="cpu")
    net = clf.model.net
    x = torch.randn(12, 1000)
    c = net.contributions(x)
    with torch.no_grad():
        logits = net(x[None]).logits[0]
    torch.testing.assert_close(c.values.sum(1) + c.bias, logits, atol=1e-4, rtol=0)
    assert net.trunk is not None and net.branches["morphology"].backbone.stage == 1


@pytest.mark.slow
def test_resume_skips_every_stage_and_keeps_the_head_relations(trained, ptbxl_dir, baseline):
    root, path = trained
    before, config = load_checkpoint(path)
    again = train_protoecgnet(ptbxl_dir, "superdiagnostic", root / "run", tiny_trunk_recipe(), cache_dir=root / "cache",
                              progress=False, trunk_from=baseline, resume=True, **FOLDS)
    after, config_again = load_checkpoint(again)
    assert config_again["model"] == config["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_trunk_network_starts_from_the_baselines_body_and_the_teacher_is_its_raw_output(baseline, ptbxl_dir,
                                                                                        tmp_path):
    from ecglens.models.protoecgnet.recipe import load_training_data

    clf = load_classifier(baseline, device="cpu")
    recipe = tiny_trunk_recipe()
    data = load_training_data(recipe, ptbxl_dir, "superdiagnostic", (1,), 9, tmp_path, False, pipeline=clf.pipeline)
    model = trunk_network(recipe, clf, data.labels, data.train_y)
    body = {k: v for k, v in clf.model.state_dict().items() if k.startswith("features.0.")}
    assert body and all(torch.equal(model.trunk.features.state_dict()[k[len("features."):]], v)
                        for k, v in body.items())
    assert model.config.related_groups is None  # the loop relates co-occurring statements only
    teacher = teacher_probabilities(clf, data.train_x)
    with clf.raw():
        np.testing.assert_allclose(teacher, clf.predict_batch(data.train_x, 100.0), rtol=0, atol=1e-6)
    assert teacher.shape == data.train_y.shape and np.all((teacher > 0) & (teacher < 1))


def test_explanation_shares_by_hand():
    weight = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])  # (statements, prototypes)
    scores = np.array([[1.0, 2.0, 1.0]])
    called = np.array([[True, True]])
    own = np.array([[True, False, False], [False, False, True]])
    related = np.array([[False, True, False], [False, False, False]])
    out = explanation_shares(weight, scores, called, own, related, top=(1,))
    # statement 0: |contributions| 2, 2, 0 -> own 0.5, own+related 1, top-1 0.5; statement 1: 0, 2, 3 -> 0.6, 0.6, 0.6
    assert out["own_share_median"] == pytest.approx(0.55)
    assert out["own_related_share_median"] == pytest.approx(0.8)
    assert out["top1_coverage_median"] == pytest.approx(0.55)
    assert out["n_called"] == 2 and out["called_per_record"] == 2.0
    assert out["nonzero_weights_per_statement_median"] == 2.0


def test_head_targets_by_hand_and_as_the_fine_tunes_objective():
    labels, teacher = np.array([[1.0, 0.0]]), np.array([[0.2, 0.6]])
    np.testing.assert_allclose(head_targets(labels, teacher, 3.0), [[0.4, 0.45]], rtol=1e-6)  # (1+.6)/4, 1.8/4
    np.testing.assert_array_equal(head_targets(labels, teacher, 0.0), labels)
    with pytest.raises(ConfigError, match=">= 0"):
        head_targets(labels, teacher, -1.0)
    rng = np.random.default_rng(0)
    y = (rng.random((16, 5)) < 0.3).astype(np.float32)
    t = rng.random((16, 5)).astype(np.float32)
    z, pos_weight = torch.randn(16, 5), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    mixed = classification_loss(z, torch.from_numpy(head_targets(y, t, 3.0)), pos_weight)
    summed = classification_loss(z, torch.from_numpy(y), pos_weight) + 3.0 * classification_loss(
        z, torch.from_numpy(t), pos_weight)
    assert float(4.0 * mixed) == pytest.approx(float(summed), rel=1e-5)


def test_trunk_recipe_is_checked_and_round_trips():
    recipe = ProtoTrainConfig(trunk=TrunkRecipe(stages={"morphology": 2}, head_l1=[1e-3]))
    again = ProtoTrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again.trunk == recipe.trunk and again.trunk.head_l1 == (1e-3,)
    for bad in ({"epochs": 0}, {"head_l1": ()}, {"distill": -1.0}, {"loop_l1": -1e-3}, {"push_every": -1},
                {"head_distill": -0.5}):
        with pytest.raises(ConfigError):
            TrunkRecipe(**bad)
    with pytest.raises(ConfigError, match="trunk_from"):
        train_protoecgnet("unused", recipe=recipe)


def protoecgnet_parser() -> argparse.ArgumentParser:
    """The parser of ``ecglens train protoecgnet``'s options."""
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    return parser


def test_cli_trunk_options():
    parser = protoecgnet_parser()
    args = parser.parse_args(["--data", "d", "--out", "o", "--trunk", "baseline", "--trunk-stages",
                              "morphology=2,global=1", "--distill", "1", "--push-every", "5"])
    assert (args.trunk, args.distill, args.push_every) == ("baseline", 1.0, 5)
    assert options.parse_trunk_stages(args.trunk_stages) == {"morphology": 2, "global": 1}
    with pytest.raises(ConfigError, match="--trunk-stages"):
        options.parse_trunk_stages("morphology")


def test_head_l1_list_is_parsed_and_checked():
    assert options.parse_head_l1("0.0005,0.001") == (5e-4, 1e-3)
    for bad in ("", "a,0.001", "-0.001", ","):
        with pytest.raises(ConfigError, match="--head-l1"):
            options.parse_head_l1(bad)


def test_prototypes_per_class_reach_the_recipe():
    counts = options.parse_prototype_counts("rhythm=5, morphology=18")
    assert counts == {"rhythm": 5, "morphology": 18}
    recipe = recipe_with_prototypes(ProtoTrainConfig(), counts)
    assert {n: b.prototypes_per_class for n, b in recipe.branches.items()} == {"rhythm": 5, "morphology": 18,
                                                                                "global": 5}
    assert ProtoTrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict()))).branches == recipe.branches
    with pytest.raises(ConfigError, match="--prototypes-per-class"):
        options.parse_prototype_counts("beat=2")
    with pytest.raises(ConfigError, match="at least 1"):
        recipe_with_prototypes(ProtoTrainConfig(), {"global": 0})


def test_prototype_seconds_reach_the_recipe():
    seconds = options.parse_prototype_seconds("morphology=0.5")
    assert seconds == {"morphology": 0.5}
    recipe = recipe_with_prototypes(ProtoTrainConfig(), seconds=seconds)
    assert recipe.branches["morphology"].prototype_seconds == 0.5
    assert recipe.branches["rhythm"] == ProtoTrainConfig().branches["rhythm"]
    for bad in ("morphology=-0.5", "morphology=1.2.3", "morphology=", "beat=1"):
        with pytest.raises(ConfigError, match="--prototype-seconds"):
            options.parse_prototype_seconds(bad)
    with pytest.raises(ConfigError, match="above 0 s"):
        recipe_with_prototypes(ProtoTrainConfig(), seconds={"morphology": 0.0})


@pytest.mark.slow
def test_trunk_training_runs_under_torchrun(ptbxl_dir, baseline, tmp_path, run_clean):
    import sys

    out = tmp_path / "run"
    run_clean([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ecglens",
               "train", "protoecgnet", "--data", str(ptbxl_dir), "--labels", "superdiagnostic", "--out", str(out),
               "--trunk", str(baseline), "--trunk-stages", "morphology=1", "--epochs-per-stage", "finetune=1,refine=1",
               "--prototypes-per-class", "morphology=2", "--prototype-seconds", "morphology=0.5",
               "--max-records", str(N), "--cache", str(tmp_path / "cache"), "--no-progress"], tmp_path, timeout=300)
    _, config = load_checkpoint(out / "model")
    assert config["training"]["world_size"] == 2
    assert config["model"]["branches"]["morphology"]["prototypes_per_class"] == 2
    assert config["model"]["branches"]["morphology"]["prototype_seconds"] == 0.5
    finetune = json.loads((out / "finetune" / "stage.json").read_text())
    assert finetune["world_size"] == 2
    log = [json.loads(line) for line in (out / "finetune" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["records"] == N  # the two ranks together saw every training record once per epoch
    assert load_classifier(out / "model", device="cpu").predict_batch(np.zeros((1, 12, 1000), np.float32),
                                                                      100.0).shape == (1, 5)


@pytest.mark.slow
def test_refine_can_be_left_out_and_the_fine_tune_can_push(ptbxl_dir, baseline, tmp_path):
    recipe = tiny_trunk_recipe()
    recipe = replace(recipe, trunk=replace(recipe.trunk, refine_epochs=0, epochs=3, push_every=1))
    path = train_protoecgnet(ptbxl_dir, "superdiagnostic", tmp_path / "run", recipe, cache_dir=tmp_path / "cache",
                             progress=False, trunk_from=baseline, **FOLDS)
    refine = json.loads((tmp_path / "run" / "refine" / "stage.json").read_text())
    assert refine["refined"] == [] and not (tmp_path / "run" / "refine" / "train_log.jsonl").exists()
    finetune = json.loads((tmp_path / "run" / "finetune" / "stage.json").read_text())
    assert finetune["pushed_at_epochs"] == [1, 2]  # not after the last: projection follows it
    assert load_classifier(path, device="cpu").labels == ["CD", "HYP", "MI", "NORM", "STTC"]


@pytest.mark.slow
def test_a_trunk_must_be_a_baseline_of_the_same_labels(ptbxl_dir, baseline, tmp_path):
    with pytest.raises(ConfigError, match="needs a trained baseline"):
        train_protoecgnet(ptbxl_dir, "superdiagnostic", tmp_path / "a", tiny_trunk_recipe(), progress=False,
                          trunk_from="factorecg", **FOLDS)
    with pytest.raises(ConfigError, match=r"other labels than label set 'all' \(5 against 71\)") as err:
        train_protoecgnet(ptbxl_dir, "all", tmp_path / "b", tiny_trunk_recipe(), cache_dir=tmp_path / "cache",
                          progress=False, trunk_from=baseline, **FOLDS)
    assert str(baseline) in str(err.value)
    import shutil

    fast = tmp_path / "baseline-500hz"
    shutil.copytree(baseline, fast)
    config = json.loads((fast / "config.json").read_text())
    config["pipeline"]["steps"][0]["target_rate"] = config["recipe"]["sampling_rate"] = 500.0  # as a 500-Hz run
    (fast / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="takes 500 Hz"):
        train_protoecgnet(ptbxl_dir, "superdiagnostic", tmp_path / "c", tiny_trunk_recipe(), progress=False,
                          trunk_from=fast, **FOLDS)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_trunk_options_without_a_trunk_are_refused():
    from ecglens.models.protoecgnet.train import run

    parser = protoecgnet_parser()
    for option in (["--distill", "1"], ["--push-every", "5"], ["--trunk-stages", "morphology=2"], ["--loop-l1", "0"],
                   ["--head-l1", "0.001"]):
        with pytest.raises(ConfigError, match="give --trunk"):
            run(parser.parse_args(["--data", "d", "--out", "o", *option]))


def test_cli_trunk_options_reach_the_recipe(monkeypatch, tmp_path):
    from ecglens.models.protoecgnet import train as train_module

    seen = {}

    def fake(data, **kw):
        seen.update(kw)
        return tmp_path

    monkeypatch.setattr(train_module, "train_protoecgnet", fake)
    parser = protoecgnet_parser()
    assert train_module.run(parser.parse_args(
        ["--data", "d", "--out", "o", "--trunk", "baseline", "--trunk-stages", "morphology=2", "--distill", "1",
         "--push-every", "5", "--epochs-per-stage", "finetune=4,refine=2", "--related-groups", "diagnostic_class",
         "--loop-l1", "0.002", "--head-l1", "0.0005, 0.003"])) == 0
    assert seen["trunk_from"] == "baseline" and seen["recipe"].related_groups == "diagnostic_class"
    assert seen["recipe"].trunk == TrunkRecipe(epochs=4, refine_epochs=2, distill=1.0, push_every=5,
                                               stages={"morphology": 2}, loop_l1=0.002, head_l1=(5e-4, 3e-3))
    with pytest.raises(ConfigError, match="--epochs-per-stage"):  # the from-scratch stages are not the trunk's
        train_module.run(parser.parse_args(["--data", "d", "--out", "o", "--trunk", "b", "--epochs-per-stage",
                                            "joint=3"]))
