"""ProtoECGNet's case-based (related) fusion head and whole-record scoring by deciding windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_protoecgnet_model import tiny_config, warmed_up

from ecglens.configs import config_from_dict
from ecglens.errors import ConfigError, ECGError
from ecglens.models.classifier import (
    Classifier,
    deciding_windows,
    windowed_logits,
    windowed_probabilities,
)
from ecglens.models.protoecgnet import ProtoECGNet, ProtoECGNetConfig
from ecglens.models.protoecgnet.classifier import (
    FusedLogits,
    model_from_checkpoint,
    protoecgnet_from_checkpoint,
)
from ecglens.models.protoecgnet.heads import (
    RelatedFusion,
    cooccurrence_pairs,
    fit_fusion_on_scores,
    fusion_head,
    related_facts,
    related_matrix,
)
from ecglens.models.protoecgnet.recipe import ProtoTrainConfig, whole_record
from ecglens.preprocess import Bandpass, FixLength, Pipeline, Resample

LABELS = ("SR", "AFIB", "IMI", "LVH", "NORM")
COOC = {"SR": {"NORM": 0.45, "LVH": 0.03}, "NORM": {"SR": 0.45}, "IMI": {"LVH": 0.1}, "LVH": {"IMI": 0.1, "SR": 0.03}}


def related_model(seed: int = 0, **kw) -> ProtoECGNet:
    torch.manual_seed(seed)
    model = warmed_up(ProtoECGNet(tiny_config(labels=LABELS, fusion="related", cooccurrence=COOC, **kw)))
    with torch.no_grad():
        model.fusion.weight.normal_()
        model.fusion.bias.normal_()
    return model


def two_records(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(12, 1000, generator=g)
    b = 2.0 * torch.randn(12, 1000, generator=g) + torch.sin(torch.arange(1000) / 7.0)
    return a, b


# ------------------------------------------------------------ related fusion
def test_related_fusion_reads_only_own_and_related_prototypes():
    model = related_model()
    fusion = model.fusion
    assert isinstance(fusion, RelatedFusion)
    proto_label = fusion.class_identity.argmax(1)
    index = {s: i for i, s in enumerate(LABELS)}
    related = {(index[a], index[b]) for a, row in COOC.items() for b, v in row.items() if v > 0.05}
    for j in range(len(LABELS)):
        for p in range(proto_label.numel()):
            c = int(proto_label[p])
            visible = c == j or (j, c) in related
            assert bool(fusion.mask[j, p]) == visible
            assert bool(fusion.own[j, p]) == (c == j) and bool(fusion.related[j, p]) == (visible and c != j)
    w = fusion.effective_weight
    assert bool((w[~(fusion.own | fusion.related)] == 0).all())
    assert bool((w[fusion.own] >= 0).all()) and bool((fusion.weight[fusion.own] < 0).any())  # clamped, not absent
    scores = torch.randn(4, proto_label.numel())
    with torch.no_grad():
        assert torch.allclose(fusion(scores), scores @ w.T + fusion.bias, atol=1e-5)
        assert torch.allclose(fusion.contributions(scores).sum(-1) + fusion.bias, fusion(scores), atol=1e-5)


def test_related_logit_is_the_sum_of_its_listed_contributions():
    model = related_model()
    x = torch.randn(12, 1000)
    c = model.contributions(x)
    with torch.no_grad():
        logits = model(x[None]).logits[0]
    assert torch.equal(c.logits, logits)
    assert torch.allclose(c.values.sum(-1) + c.bias, c.logits, atol=1e-5)
    own, related = model.fusion.own, model.fusion.related
    assert bool((c.values[~(own | related)] == 0).all())  # nothing else argues for a statement


def test_related_config_validation_and_round_trip():
    with pytest.raises(ECGError, match="needs the training co-occurrence"):
        tiny_config(labels=LABELS, fusion="related")
    with pytest.raises(ECGError, match="not labels"):
        tiny_config(labels=LABELS, fusion="related", cooccurrence={"SR": {"XYZ": 0.3}})
    with pytest.raises(ECGError, match="itself"):
        tiny_config(labels=LABELS, fusion="related", cooccurrence={"SR": {"SR": 0.3}})
    with pytest.raises(ECGError, match="window_stride_s"):
        tiny_config(labels=LABELS, window_stride_s=0)
    cfg = tiny_config(labels=LABELS, fusion="related", cooccurrence=COOC, related_threshold=0.04)
    assert ProtoECGNetConfig.from_dict(cfg.to_dict()) == cfg
    assert sorted(cfg.related_pairs()) == [(0, 4), (2, 3), (3, 2), (4, 0)]
    old = tiny_config(labels=LABELS, fusion="dense").to_dict()
    for key in ("cooccurrence", "related_threshold", "window_stride_s"):  # a checkpoint from before these fields
        old.pop(key)
    assert config_from_dict(ProtoECGNetConfig, old).fusion == "dense"


def test_related_groups_add_every_pair_within_a_group():
    # LVH-SR (0.03) is under the threshold; the groups relate IMI-LVH again (already co-occurring) and AFIB-SR
    groups = {"AFIB": "rhythm-ish", "SR": "rhythm-ish", "IMI": "MI", "LVH": "MI"}
    cfg = tiny_config(labels=LABELS, fusion="related", cooccurrence=COOC, related_groups=groups)
    assert ProtoECGNetConfig.from_dict(cfg.to_dict()) == cfg
    assert sorted(cfg.related_pairs()) == [(0, 1), (0, 4), (1, 0), (2, 3), (3, 2), (4, 0)]
    assert len(cfg.related_pairs()) == len(set(cfg.related_pairs()))  # a pair both ways related is listed once
    with pytest.raises(ECGError, match="related_groups names statements that are not labels"):
        tiny_config(labels=LABELS, fusion="related", cooccurrence=COOC, related_groups={"PMI": "MI"})
    model = related_model(related_groups=groups)
    proto_label = model.fusion.class_identity.argmax(1)
    afib, sr = LABELS.index("AFIB"), LABELS.index("SR")
    assert bool(model.fusion.related[afib][proto_label == sr].all())
    assert not bool(related_model().fusion.related[afib].any())


def test_explanation_names_why_a_related_prototype_counts():
    from ecglens.explain.protoecgnet import _relation

    groups = {"AFIB": "rhythm-ish", "SR": "rhythm-ish", "IMI": "MI", "LVH": "MI"}
    cfg = tiny_config(labels=LABELS, fusion="related", cooccurrence=COOC, related_groups=groups)
    assert _relation(cfg, "IMI", "LVH") == {"jaccard": 0.1, "group": "MI"}
    assert _relation(cfg, "SR", "NORM") == {"jaccard": 0.45, "group": None}
    assert _relation(cfg, "AFIB", "SR") == {"jaccard": None, "group": "rhythm-ish"}
    assert _relation(cfg, "SR", "LVH") == {"jaccard": None, "group": None}  # 0.03: under the threshold
    assert _relation(cfg, "IMI", "IMI") is None
    assert _relation(tiny_config(labels=LABELS, fusion="dense"), "IMI", "LVH") is None


def test_related_facts_take_the_recipe_grouping_of_the_labels():
    labels = ["PMI", "IMI", "AFIB", "LVH"]
    y = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]])
    facts = related_facts(y, labels, ProtoTrainConfig(related_groups="diagnostic_class"))
    # AFIB is a rhythm statement without a diagnostic class; PMI/IMI are MI, LVH HYP
    assert facts["related_groups"] == {"PMI": "MI", "IMI": "MI", "LVH": "HYP"}
    assert facts["cooccurrence"] == {"PMI": {"IMI": 0.5}, "IMI": {"PMI": 0.5}}
    assert related_facts(y, labels, ProtoTrainConfig())["related_groups"] is None
    assert related_facts(y, ["NORM", "MI"], ProtoTrainConfig(related_groups="diagnostic_class"))[
        "related_groups"] == {"NORM": "NORM"}  # superclasses are not statements of a class


def test_related_checkpoint_round_trip():
    model = related_model()
    config = {"kind": "protoecgnet", "model": model.config.to_dict()}
    loaded = model_from_checkpoint(model.state_dict(), config)
    assert isinstance(loaded.fusion, RelatedFusion)
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)


def test_cooccurrence_pairs_by_hand():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0]])
    # Jaccard: (0,1) 2/4 = 0.5, (1,2) 1/3, (0,2) 0
    assert cooccurrence_pairs(y, ["A", "B", "C"], 0.4) == {"A": {"B": 0.5}, "B": {"A": 0.5}}
    assert cooccurrence_pairs(y, ["A", "B", "C"], 0.3) == {"A": {"B": 0.5}, "B": {"A": 0.5, "C": 0.3333},
                                                            "C": {"B": 0.3333}}


def test_related_head_starts_from_the_last_layers_where_it_can_see():
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config(labels=LABELS)))
    pairs = [(0, 4), (4, 0)]
    head = fusion_head(model, "related", -0.5, pairs)
    assert isinstance(head, RelatedFusion) and head is not model.fusion
    assert torch.equal(head.mask.bool(), head.own | related_matrix(len(LABELS), pairs)[:, head.class_identity.argmax(1)])
    with pytest.raises(ValueError, match="unknown fusion head"):
        fusion_head(model, "average", -0.5)
    dense = ProtoECGNet(tiny_config(labels=LABELS, fusion="dense"))  # as shipped: the masked head is a new one
    masked = fusion_head(dense, "masked", -0.5)
    assert masked is not dense.fusion and torch.equal(masked.mask, dense.branch_visible())
    assert torch.equal(model.fusion.mask, model.branch_visible()) and not bool((masked.mask == 1).all())


def test_fit_fusion_on_scores_trains_a_related_head_and_leaves_the_model():
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config(labels=LABELS)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = model.fusion.weight.shape[1]
    rng = np.random.default_rng(0)
    scores = {part: rng.normal(size=(n, p)).astype(np.float32) for part, n in (("train", 64), ("val", 32))}
    targets = {part: (s[:, :len(LABELS)] > 0).astype(np.float32) for part, s in scores.items()}
    head, facts = fit_fusion_on_scores(model, "related", scores, targets,
                                       ProtoTrainConfig(fusion_epochs=3, related_l1=1e-3), seed=1, related=[(0, 4)])
    assert isinstance(head, RelatedFusion) and "val_macro_auroc" in facts
    assert bool((head.effective_weight[head.mask == 0] == 0).all())
    masked, _ = fit_fusion_on_scores(model, "masked", scores, targets, ProtoTrainConfig(fusion_epochs=2))
    assert masked is not model.fusion
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------ whole record
def test_ten_second_record_scores_exactly_as_before():
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config(labels=LABELS)))
    x = torch.randn(12, 1000)
    c = model.contributions(x)
    with torch.no_grad():
        assert torch.equal(c.logits, model(x[None]).logits[0])
    assert bool((c.window_start == 0).all()) and c.window_length == 1000
    assert torch.equal(c.window_seconds()[0], torch.tensor([0.0, 10.0], dtype=torch.float64))
    with torch.no_grad():
        probs = windowed_probabilities(FusedLogits(model), x[None], 1000, model.window_stride)
        assert torch.equal(probs[0], torch.sigmoid(c.logits))


def test_two_records_concatenated_are_scored_by_the_deciding_window():
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config(labels=LABELS)))
    a, b = two_records()
    x = torch.cat([a, b], dim=1)  # 20 s: windows start at 0, 5 and 10 s
    c = model.contributions(x)
    with torch.no_grad():
        per_window = torch.stack([model(x[None, :, s:s + 1000]).logits[0] for s in (0, 500, 1000)])
        la, lb = model(a[None]).logits[0], model(b[None]).logits[0]
    assert torch.equal(per_window[0], la) and torch.equal(per_window[2], lb)
    # the windows run as one batch: equal to each window run alone up to float rounding
    best = per_window.argmax(0)
    assert torch.equal(c.window_start, torch.tensor([0, 500, 1000])[best])
    assert torch.allclose(c.logits, per_window.max(0).values, atol=1e-6)
    for j in range(len(LABELS)):
        if int(c.window_start[j]) == 0:
            assert torch.isclose(c.logits[j], la[j], atol=1e-6)
        if int(c.window_start[j]) == 1000:
            assert torch.isclose(c.logits[j], lb[j], atol=1e-6)
    assert {0, 1000} & set(c.window_start.tolist())  # the two halves differ: some statement is decided by one
    # the decomposition is exact for each statement's deciding window
    assert torch.allclose(c.values.sum(-1) + c.bias, c.logits, atol=1e-5)
    for j in range(len(LABELS)):
        s = int(c.window_start[j])
        alone = model.contributions(x[:, s:s + 1000])
        assert torch.allclose(c.values[j], alone.values[j], atol=1e-6)
        assert torch.isclose(alone.logits[j], c.logits[j], atol=1e-6)
    seconds = c.window_seconds()
    assert torch.equal(seconds[:, 0], c.window_start.double() / 100) and bool((seconds[:, 1] - seconds[:, 0] == 10).all())
    with torch.no_grad():
        probs = windowed_probabilities(FusedLogits(model), x[None], 1000, model.window_stride)[0]
    assert torch.allclose(probs, torch.sigmoid(c.logits))


def test_classifier_names_the_deciding_window_and_keeps_short_records():
    torch.manual_seed(0)
    model = warmed_up(ProtoECGNet(tiny_config(labels=LABELS)))
    pipeline = Pipeline((Resample(100.0),))
    clf = Classifier(FusedLogits(model), list(LABELS), pipeline, 100.0, 10.0, 5.0, "max", device="cpu")
    a, b = two_records()
    x = torch.cat([a, b], dim=1)
    c = model.contributions(x)
    assert np.allclose(clf.deciding_windows(x.numpy()), c.window_seconds().numpy())
    with clf.raw():
        assert np.allclose(clf.predict_batch(x[None].numpy(), 100.0)[0], torch.sigmoid(c.logits).numpy(), atol=1e-6)
    short = x[:, :730]  # zero-padded to one window; the window stops where the record does
    assert np.allclose(clf.deciding_windows(short.numpy()), [[0.0, 7.3]] * len(LABELS))
    assert np.allclose(model.contributions(short).window_seconds().numpy(), [[0.0, 7.3]] * len(LABELS))
    with torch.no_grad():
        logits = windowed_logits(FusedLogits(model), x[None], 1000, 500)
    assert torch.equal(deciding_windows(logits)[0], c.window_start // 500)
    mean = Classifier(FusedLogits(model), list(LABELS), pipeline, 100.0, 10.0, 5.0, "mean", device="cpu")
    with pytest.raises(ConfigError, match="no deciding window"):
        mean.deciding_windows(x.numpy())
    with pytest.raises(ECGError, match="one preprocessed record"):
        clf.deciding_windows(x[None].numpy())
    with pytest.raises(ECGError, match="batch of 2"):
        model.contributions(torch.randn(2, 12, 1000))


def test_whole_record_pipeline_drops_only_the_fixed_length():
    pipe = Pipeline((Resample(100.0), Bandpass(0.5, 40.0), FixLength(10.0)))
    assert whole_record(pipe) == Pipeline((Resample(100.0), Bandpass(0.5, 40.0)))


def test_shipped_model_scores_a_ten_second_sample_as_with_the_old_fixed_length():
    from ecglens.pretrained import pretrained_root
    from ecglens.samples import list_samples, load_sample
    from ecglens.training import load_checkpoint

    state, config = load_checkpoint(pretrained_root() / "protoecgnet")
    assert not any(s["step"] == "fix_length" for s in config["pipeline"]["steps"])
    clf = protoecgnet_from_checkpoint(state, config, device="cpu")
    old = dict(config)
    steps = list(config["pipeline"]["steps"])
    old["pipeline"] = {"steps": steps[:2] + [{"step": "fix_length", "seconds": 10.0, "align": "start"}] + steps[2:]}
    before = protoecgnet_from_checkpoint(state, old, device="cpu")
    ecg = load_sample(list_samples()[0].ecg_id)
    assert np.array_equal(clf.predict_proba(ecg), before.predict_proba(ecg))
    long = ecg.with_signal(np.concatenate([ecg.signal, ecg.signal[:, ::-1]], axis=1), ecg.sampling_rate)
    x = clf.preprocess(long)
    assert x.shape[-1] == 2 * clf.preprocess(ecg).shape[-1]  # the whole record reaches the model
    assert before.preprocess(long).shape[-1] == 1000
