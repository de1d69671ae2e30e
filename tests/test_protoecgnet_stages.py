"""ProtoECGNet training stages end to end on a few dozen PTB-XL records with a tiny model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ecglens.errors import ConfigError, ECGError
from ecglens.models import load_classifier
from ecglens.models.protoecgnet import BranchConfig
from ecglens.models.protoecgnet.classifier import model_from_checkpoint
from ecglens.models.protoecgnet.projection import (
    Gallery,
    _assign,
    collect_latents,
    project_prototypes,
    sync_prototypes,
)
from ecglens.models.protoecgnet.options import parse_stage_epochs
from ecglens.models.protoecgnet.recipe import ProtoTrainConfig, recipe_with_losses
from ecglens.models.protoecgnet.stages import STAGES, branches_to_refine
from ecglens.models.protoecgnet.train import train_protoecgnet
from ecglens.training import load_checkpoint


def tiny_recipe(**kw) -> ProtoTrainConfig:
    branches = {
        "rhythm": BranchConfig(kind="1d", widths=(8, 8), time_strides=(2, 4), kernel=5, prototype_channels=8,
                               prototypes_per_class=2, prototype_mode="pooled"),
        "morphology": BranchConfig(kind="2d", widths=(4, 8), time_strides=(2, 4), lead_strides=(2, 2), kernel=5,
                                   prototype_channels=4, prototypes_per_class=2, prototype_mode="partial"),
        "global": BranchConfig(kind="2d", widths=(4, 4), time_strides=(2, 4), lead_strides=(2, 2), kernel=5,
                               prototype_channels=4, prototypes_per_class=2, prototype_mode="full"),
    }
    base = {"warmup_epochs": 1, "joint_epochs": 1, "refine_epochs": 1, "last_layer_epochs": 2, "fusion_epochs": 2,
            "batch_size": 32, "branches": branches, "max_records": 48}
    base.update(kw)
    return ProtoTrainConfig(**base)


@pytest.fixture(scope="module")
def trained(ptbxl_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("proto") / "run"
    cache = tmp_path_factory.mktemp("proto-cache")
    path = train_protoecgnet(ptbxl_dir, "superdiagnostic", out, tiny_recipe(related_groups="diagnostic_class"),
                             folds_train=(1, 2), fold_val=9,
                             cache_dir=cache, progress=False)
    return out, path, cache


@pytest.mark.slow
def test_all_stages_run_to_a_loadable_checkpoint(trained):
    out, path, _ = trained
    assert path == out / "model"
    for stage in STAGES:
        assert (out / stage / "stage.json").is_file()
        assert (out / stage / "model" / "config.json").is_file()
    _, config = load_checkpoint(path)
    facts = config["training"]
    assert set(facts["wall_s"]) == set(STAGES) and all(v > 0 for v in facts["wall_s"].values())
    summary = facts["summary"]
    for scores in summary["branches"].values():
        assert {"pre_projection", "post_projection", "after_last_layer"} <= set(scores)
    assert "fusion_dense" in summary["val_macro_auroc"] and "fusion_masked" in summary["val_macro_auroc"]


@pytest.mark.slow
def test_checkpoint_loads_without_training_data_and_predicts(trained, tmp_path):
    _, path, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    clf = load_classifier(copy, device="cpu")
    assert clf.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert not any(s.name == "fix_length" for s in clf.pipeline.steps)  # records are scored whole, by windows
    x = np.random.default_rng(0).standard_normal((3, 12, 1000)).astype(np.float32)
    p = clf.predict_batch(x, 100.0)
    assert p.shape == (3, 5) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    gallery = Gallery.load(copy)
    assert gallery.signals.dtype == np.float16 and gallery.signals.shape[1:] == (12, 1000)


@pytest.mark.slow
def test_training_set_scale_is_fitted_and_stored(ptbxl_dir, tmp_path, trained):
    """normalize='scale': one per-lead mean/std from the training records goes into the stored
    pipeline, and the checkpoint scores a record the same as the network on the scaled input."""
    from ecglens.datasets import PTBXL
    from ecglens.preprocess import Scale

    _, _, cache = trained
    recipe = tiny_recipe(normalize="scale", joint_epochs=1, last_layer_epochs=1, fusion_epochs=1)
    path = train_protoecgnet(ptbxl_dir, "superdiagnostic", tmp_path / "run", recipe, folds_train=(1, 2), fold_val=9,
                             cache_dir=cache, progress=False)
    clf = load_classifier(path, device="cpu")
    steps = clf.pipeline.steps
    assert isinstance(steps[-1], Scale) and not any(s.name == "standardize" for s in steps)
    ds = PTBXL(ptbxl_dir, sampling_rate=100)
    train = ds.load("superdiagnostic", (1, 2), recipe.display_pipeline(100.0), cache_dir=cache, progress=False)
    x = np.asarray(train.arrays(recipe.max_records)[1], dtype=np.float64)
    assert np.allclose(steps[-1].mean, x.mean(axis=(0, 2)), atol=1e-4)
    assert np.allclose(steps[-1].std, x.std(axis=(0, 2)), rtol=1e-3)
    ecg = ds.read(int(train.ecg_ids[0]))
    scaled = clf.pipeline.apply_signal(ecg.signal, ecg.sampling_rate)[0]
    model = model_from_checkpoint(*load_checkpoint(path))
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(scaled[None].astype(np.float32))).logits).numpy()[0]
    assert np.allclose(clf.predict_ecgs([ecg])[0], direct, atol=1e-5)
    with pytest.raises(ECGError, match="normalize"):
        ProtoTrainConfig(normalize="zscore")


@pytest.mark.slow
def test_projection_leaves_bounded_non_constant_logits(trained, ptbxl_dir):
    """The failure designed out: after projection every raw similarity is large and close
    to 1; the refitted normalisation keeps logits O(1) and records distinguishable."""
    _, path, _ = trained
    state, config = load_checkpoint(path.parent / "projection" / "model")
    facts = json.loads((path.parent / "projection" / "stage.json").read_text())
    assert facts["logit_abs_max_val"] < 50
    assert facts["logit_std_val"] > 1e-3
    model = model_from_checkpoint(state, config)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((8, 12, 1000)).astype(np.float32))
    with torch.no_grad():
        out = model(x)
    assert out.branch_logits_full.abs().max() < 50
    assert out.branch_logits_full.std(dim=0).max() > 1e-4
    post = facts["post_projection"]["val_macro_auroc"]
    assert np.isfinite(post) and post != 0.5


@pytest.mark.slow
def test_projected_prototypes_are_real_windows(trained):
    _, path, _ = trained
    state, config = load_checkpoint(path)
    model = model_from_checkpoint(state, config)
    gallery = Gallery.load(path)
    projected = [r for r in gallery.prototypes if r["projected"]]
    assert projected
    # each projected prototype has similarity 1 with its own source window
    from ecglens.preprocess import Pipeline
    pipeline = Pipeline.from_dict(config["pipeline"])
    for row in projected[:6]:
        raw = gallery.signals[row["source"]].astype(np.float32)
        x = torch.from_numpy(pipeline.apply_signal(raw, 100.0)[0])[None]
        # the gallery holds the band-passed mV record; standardising it again reproduces the model input
        with torch.no_grad():
            out = model(x)
        sim = out.similarities[row["branch"]][0, row["index"]].item()
        assert sim == pytest.approx(1.0, abs=2e-2)
        assert row["label"] in row["source_labels"]
        assert 0 <= row["start"] < row["end"] <= 1000


@pytest.mark.slow
def test_gallery_sources_are_unique_within_a_class(trained):
    _, path, _ = trained
    gallery = Gallery.load(path)
    by_class: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in gallery.prototypes:
        if r["projected"]:
            by_class.setdefault((r["branch"], r["label"]), []).append((r["ecg_id"], r["window"]))
    for key, sources in by_class.items():
        assert len(set(sources)) == len(sources), key


def test_assign_prefers_unused_records_then_disjoint_windows():
    sims = np.zeros((2, 3, 10))
    sims[0, :, 4] = [0.9, 0.8, 0.7]     # everyone likes record 0, window 4
    sims[1, :, 2] = [0.5, 0.6, 0.4]
    sims[0, 2, 8] = 0.65                 # prototype 2's next best in record 0 is far from window 4
    picks = _assign(sims, length=3)
    assert picks[0][:2] == (0, 4) and picks[0][3] == "unique"
    assert picks[1][:2] == (1, 2) and picks[1][3] == "unique"
    assert picks[2][:2] == (0, 8) and picks[2][3] == "shared"


@pytest.mark.slow
def test_resume_skips_finished_stages(trained, ptbxl_dir, tmp_path):
    out, _, cache = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "fusion")
    before = {s: (run / s / "stage.json").read_text() for s in STAGES[:-1]}
    train_protoecgnet(ptbxl_dir, "superdiagnostic", run, tiny_recipe(), folds_train=(1, 2), fold_val=9,
                      cache_dir=cache, resume=True, progress=False)
    for s in STAGES[:-1]:
        assert (run / s / "stage.json").read_text() == before[s]
    assert (run / "fusion" / "stage.json").is_file() and (run / "model" / "gallery.json").is_file()
    with pytest.raises(ECGError, match="previous run"):
        train_protoecgnet(ptbxl_dir, "superdiagnostic", run, tiny_recipe(), folds_train=(1, 2), fold_val=9,
                          cache_dir=cache, progress=False)


def test_fusion_heads_start_from_the_branch_last_layers():
    from ecglens.models.protoecgnet import ProtoECGNet, ProtoECGNetConfig
    from ecglens.models.protoecgnet.heads import fusion_head

    torch.manual_seed(0)
    model = ProtoECGNet(ProtoECGNetConfig(labels=("SR", "AFIB", "IMI", "LVH", "NORM"), branches=tiny_recipe().branches))
    for name in model.branch_names:
        with torch.no_grad():
            model.branches[name].last_layer.weight.normal_()
            model.branches[name].last_layer.bias.normal_()
    with torch.no_grad():
        out = model.eval()(torch.randn(4, 12, 1000))
    scores = torch.cat([out.normalized[n] for n in model.branch_names], 1)
    masked, dense = fusion_head(model, "masked", -0.5), fusion_head(model, "dense", -0.5)
    assert masked is model.fusion and bool((dense.mask == 1).all()) and not bool((masked.mask == 1).all())
    with torch.no_grad():
        for head in (masked, dense):
            assert torch.allclose(head(scores), out.branch_logits_full, atol=1e-5)


@pytest.mark.slow
def test_model_carries_the_dense_fusion_and_the_masked_one_is_saved_beside_it(trained):
    out, path, _ = trained
    state, config = load_checkpoint(path)
    dense = model_from_checkpoint(state, config)
    masked_state, masked_config = load_checkpoint(out / "model-masked")
    masked = model_from_checkpoint(masked_state, masked_config)
    assert config["model"]["fusion"] == "dense" and config["head"] == "dense fusion"
    assert masked_config["model"]["fusion"] == "masked" and masked_config["head"] == "masked fusion"
    assert (out / "model-masked" / "gallery.json").is_file()
    assert bool((dense.fusion.mask == 1).all()) and not bool((masked.fusion.mask == 1).all())
    related_state, related_config = load_checkpoint(out / "model-related")
    related = model_from_checkpoint(related_state, related_config)
    assert related_config["model"]["fusion"] == "related" and related_config["head"] == "related fusion"
    assert related_config["model"]["cooccurrence"] is not None and (out / "model-related" / "gallery.json").is_file()
    # of the superclasses only NORM is also a statement (of diagnostic class NORM): the recipe's groups, carried along
    assert related_config["model"]["related_groups"] == {"NORM": "NORM"} and config["model"]["related_groups"] is None
    assert bool((related.fusion.effective_weight[related.fusion.mask == 0] == 0).all())
    assert summary_has_related(config)
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        a, b = masked(x), dense(x)
    assert torch.equal(a.branch_logits_full, b.branch_logits_full)  # same network, only the fusion differs
    head, _ = load_checkpoint(out / "fusion" / "dense_head")
    assert torch.equal(dense.fusion.weight, head["weight"])
    summary = config["training"]["summary"]["val_macro_auroc"]
    stage = json.loads((out / "fusion" / "stage.json").read_text())
    assert summary["fusion_dense"] == stage["val_dense_macro_auroc"]
    refined = config["training"]["summary"]["refined_branches"]
    runs = [out / "refine"] if refined else []
    runs += [out / "last_layer" / n for n in dense.branch_names] + [out / "fusion" / k for k in ("dense", "masked", "related")]
    refine = json.loads((out / "refine" / "stage.json").read_text())
    assert refined and set(refine["best_epoch_per_branch"]) == set(refined)
    for name, epoch in refine.get("best_epoch_per_branch", {}).items():  # each branch keeps its best epoch's backbone
        saved, _ = load_checkpoint(out / "refine" / "epochs" / str(epoch))
        key = next(k for k in saved if k.startswith(f"{name}.backbone."))
        assert torch.equal(saved[key], masked_state[f"branches.{key}"])
    for run in runs:  # fine-tuning runs validate their starting weights first and keep them unless beaten
        first = json.loads((run / "train_log.jsonl").read_text().splitlines()[0])
        assert first["epoch"] == 0 and first["best"]


def summary_has_related(config) -> bool:
    summary = config["training"]["summary"]["val_macro_auroc"]
    return summary["fusion_related"] is not None and "val_related_macro_auroc" in config["training"]["stages"]["fusion"]


def test_recipe_round_trip_and_invalid_values():
    recipe = tiny_recipe(head="masked", patience=None)
    assert ProtoTrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    with pytest.raises(ConfigError, match="fusion_epochs must be at least 1"):
        tiny_recipe(fusion_epochs=0)
    with pytest.raises(ConfigError, match="unknown field"):
        ProtoTrainConfig.from_dict({"warmup_epoch": 2})
    with pytest.raises(ConfigError, match="related_groups must be one of"):
        tiny_recipe(related_groups="kind")


@pytest.mark.slow
def test_paper_losses_keep_branch_last_layers_at_their_start_until_their_stage(ptbxl_dir, tmp_path, trained):
    _, _, cache = trained
    recipe = recipe_with_losses(tiny_recipe(max_records=32), "paper")
    assert recipe.freeze_last_layers and recipe.loss.diversity_pairs == "all" and recipe.loss.contrastive == 0
    train_protoecgnet(ptbxl_dir, "superdiagnostic", tmp_path / "run", recipe, folds_train=(1, 2), fold_val=9,
                      cache_dir=cache, progress=False)
    def load(stage):
        return model_from_checkpoint(*load_checkpoint(tmp_path / "run" / stage / "model"))

    start = load("joint")
    for name, branch in start.branches.items():
        fresh = type(branch.last_layer)(branch.last_layer.class_identity.argmax(1), branch.last_layer.weight.shape[0],
                                        start.config.off_class_weight)
        assert torch.equal(branch.last_layer.weight, fresh.weight), name
        assert torch.equal(branch.last_layer.bias, fresh.bias), name
    fitted = load("last_layer")
    assert any(not torch.equal(b.last_layer.weight, start.branches[n].last_layer.weight)
               for n, b in fitted.branches.items())
    # the backbone did train in joint
    warm = load("warmup")
    assert any(not torch.equal(b.backbone.stem[0].weight, start.branches[n].backbone.stem[0].weight)
               for n, b in warm.branches.items())
    with pytest.raises(ConfigError, match="losses"):
        recipe_with_losses(recipe, "theirs")


def test_parse_stage_epochs():
    assert parse_stage_epochs("warmup=2, joint=10") == {"warmup_epochs": 2, "joint_epochs": 10}
    with pytest.raises(ECGError):
        parse_stage_epochs("projection=3")


def test_proximity_loss_by_hand():
    from ecglens.models.protoecgnet import proximity_loss

    sim = torch.tensor([[0.9, 0.5, 0.2], [0.3, 0.6, 0.8]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    proto_class = torch.tensor([0, 0, 1])
    # p0: best own-class record 0.9 -> 0.1; p1: 0.6 -> 0.4; p2: only record 1 has class 1, 0.8 -> 0.2
    assert proximity_loss(sim, targets, proto_class).item() == pytest.approx((0.1 + 0.4 + 0.2) / 3, abs=1e-6)
    # a prototype whose class is absent from the batch is ignored
    assert proximity_loss(sim, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), proto_class).item() == pytest.approx(0.25)


def test_cli_registers_the_trainer():
    from ecglens.cli import build_parser

    def parse(*argv):
        return build_parser(list(argv)).parse_args(list(argv))

    args = parse("train", "protoecgnet", "--data", "D", "--out", "R", "--epochs-per-stage", "joint=3", "--resume",
                 "--threads", "2")
    assert args.model == "protoecgnet" and args.resume and args.threads == 2
    assert parse_stage_epochs(args.epochs_per_stage) == {"joint_epochs": 3}
    assert (args.head, args.normalize) == ("dense", "scale")
    args = parse("train", "protoecgnet", "--data", "D", "--out", "R", "--head", "masked", "--normalize", "standardize")
    assert (args.head, args.normalize) == ("masked", "standardize")
    assert parse("train", "protoecgnet", "--data", "D", "--out", "R", "--losses", "paper").losses == "paper"
    assert parse("train", "protoecgnet", "--data", "D", "--out", "R").related_groups is None
    assert parse("train", "protoecgnet", "--data", "D", "--out", "R", "--related-groups",
                 "diagnostic_class").related_groups == "diagnostic_class"


def test_branches_to_refine_are_those_that_lost_at_projection():
    facts = {"pre_projection": {"val_auroc_rhythm": 0.90, "val_auroc_morphology": 0.84, "val_auroc_global": 0.88},
             "post_projection": {"val_auroc_rhythm": 0.90, "val_auroc_morphology": 0.76, "val_auroc_global": 0.91}}
    assert branches_to_refine(facts, ["rhythm", "morphology", "global"]) == ["morphology"]


@pytest.mark.slow
def test_refine_ties_prototypes_to_their_sources_so_reprojection_keeps_them(trained):
    out, _, _ = trained
    state, config = load_checkpoint(out / "projection" / "model")
    model = model_from_checkpoint(state, config)
    rng = np.random.default_rng(0)
    signals = rng.standard_normal((6, 12, 1000)).astype(np.float32)
    y = np.ones((6, len(model.labels)))
    rows = project_prototypes(model, collect_latents(model, signals), y, list(range(100, 106)))
    with torch.no_grad():  # the backbones move, as in a refine epoch: prototypes are stale now
        for p in model.branches["morphology"].backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sources = [(r["branch"], r["index"], r["record"], r["window"]) for r in rows if r["branch"] == "morphology"]
    before = {b: model.branches[b].prototype_layer.prototypes.clone() for b in model.branch_names}
    assert sync_prototypes(model, signals, sources) == len({s[2] for s in sources})
    latents = collect_latents(model, signals)
    layer = model.branches["morphology"].prototype_layer
    for _, index, rec, window in sources:
        assert torch.equal(layer.prototypes[index], latents["morphology"][rec, :, window:window + layer.length])
    others = [n for n in model.branch_names if n != "morphology"]
    assert others
    for name in others:  # branches not listed are untouched
        assert torch.equal(model.branches[name].prototype_layer.prototypes, before[name])
    again = project_prototypes(model, latents, y, list(range(100, 106)))
    for a, b in zip(rows, again):
        if a["branch"] == "morphology":
            assert (a["record"], a["window"]) == (b["record"], b["window"])
            assert b["similarity"] == pytest.approx(1.0, abs=1e-5)
