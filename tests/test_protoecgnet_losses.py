"""ProtoECGNet losses on hand-computed examples (2 records, 3 classes, 5 prototypes)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecglens.datasets import jaccard_cooccurrence
from ecglens.errors import ECGError
from ecglens.models.protoecgnet import (BranchConfig, LossWeights, ProtoECGNet, ProtoECGNetConfig,
                                        classification_loss, cluster_loss, contrastive_loss,
                                        diversity_loss, jaccard_contrastive_loss, l1_offclass_loss,
                                        paper_loss_weights, pos_weight_from_labels, prototype_contrastive_loss,
                                        separation_loss, total_loss)

# prototypes 0,1 -> class 0; 2,3 -> class 1; 4 -> class 2
PROTO_CLASS = torch.tensor([0, 0, 1, 1, 2])
SIM = torch.tensor([[0.9, 0.5, 0.2, 0.4, 0.1],
                    [0.3, 0.6, 0.8, 0.7, 0.5]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0],
                        [0.0, 1.0, 1.0]])
# classes 1 and 2 co-occur (0.5 > 0.2); class 0 is unrelated to both
COOC = torch.tensor([[1.0, 0.0, 0.1],
                     [0.0, 1.0, 0.5],
                     [0.1, 0.5, 1.0]])
# 2-D prototype vectors (D=2, L=1)
PROTOS = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 2.0], [3.0, 4.0]])[:, :, None]


def test_pos_weight_formula():
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    # class 0: 2 neg / 2 pos = 1; class 1: 3 / 1 = 3, capped at 2; class 2: no positive -> 1
    assert torch.allclose(pos_weight_from_labels(y, cap=2.0), torch.tensor([1.0, 2.0, 1.0]))
    assert torch.allclose(pos_weight_from_labels(y, cap=20.0), torch.tensor([1.0, 3.0, 1.0]))
    with pytest.raises(ECGError):
        pos_weight_from_labels(np.zeros(4))


def test_classification_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # positive: 2 * log(1 + e^0) = 2 ln 2; negative: log(1 + e^2); mean of the two
    expected = (2 * math.log(2) + math.log(1 + math.e ** 2)) / 2
    assert classification_loss(logits, targets, torch.tensor([2.0, 1.0])).item() == pytest.approx(expected, rel=1e-6)
    assert classification_loss(logits, targets).item() == pytest.approx(
        (math.log(2) + math.log(1 + math.e ** 2)) / 2, rel=1e-6)


def test_cluster_loss_by_hand():
    # record 0, class 0: 1 - max(0.9, 0.5) = 0.1
    # record 1, class 1: 1 - max(0.8, 0.7) = 0.2; class 2: 1 - 0.5 = 0.5
    assert cluster_loss(SIM, TARGETS, PROTO_CLASS).item() == pytest.approx((0.1 + 0.2 + 0.5) / 3)
    assert cluster_loss(SIM, torch.zeros(2, 3), PROTO_CLASS).item() == 0.0  # nothing present


def test_separation_loss_by_hand():
    # record 0 lacks classes 1, 2 -> prototypes 2, 3, 4 -> max 0.4
    # record 1 lacks class 0 -> prototypes 0, 1 -> max 0.6
    assert separation_loss(SIM, TARGETS, PROTO_CLASS).item() == pytest.approx((0.4 + 0.6) / 2)
    # a record with every class present contributes nothing; record 1 lacking class 1 -> max(0.8, 0.7)
    assert separation_loss(SIM, torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]), PROTO_CLASS).item() == \
        pytest.approx(0.8)
    # negative similarities are not pushed further
    assert separation_loss(-SIM, TARGETS, PROTO_CLASS).item() == 0.0


def test_diversity_loss_by_hand():
    # class 0: cos(p0, p1) = 1/sqrt(2) -> 0.5 squared; class 1: p2 || p3 -> 1; class 2 alone
    # ordered pairs (0,1), (1,0), (2,3), (3,2): mean(0.5, 0.5, 1, 1)
    assert diversity_loss(PROTOS, PROTO_CLASS).item() == pytest.approx(0.75)


def test_diversity_loss_over_all_pairs_by_hand():
    # cosines: p0.p1 = 1/sqrt2, p0.p2 = p0.p3 = 0, p0.p4 = 0.6, p1.p2 = p1.p3 = 1/sqrt2, p1.p4 = 7/(5 sqrt2),
    # p2.p3 = 1, p2.p4 = p3.p4 = 0.8; squared, each unordered pair twice -> mean of the 10 unordered pairs
    squares = [0.5, 0, 0, 0.36, 0.5, 0.5, 49 / 50, 1, 0.64, 0.64]
    assert diversity_loss(PROTOS, PROTO_CLASS, pairs="all").item() == pytest.approx(sum(squares) / 10, rel=1e-6)
    with pytest.raises(ECGError, match="pairs"):
        diversity_loss(PROTOS, PROTO_CLASS, pairs="some")


def test_jaccard_contrastive_loss_by_hand():
    # pairs of different classes (unordered, each counted twice): classes (0,1) J=0, (0,2) J=0.1, (1,2) J=0.5
    # (0,1): p0-p2, p0-p3 cos 0; p1-p2, p1-p3 cos 1/sqrt2 -> push relu(cos - 0) each, weight 1
    # (0,2): p0-p4 cos 0.6, p1-p4 cos 7/(5 sqrt2) -> 0.1 (1 - cos) + 0.9 cos
    # (1,2): p2-p4, p3-p4 cos 0.8 -> 0.5 (1 - 0.8) + 0.5 * 0.8 = 0.5
    r2 = 1 / math.sqrt(2)
    c14 = 7 / (5 * math.sqrt(2))
    terms = [0, 0, r2, r2, 0.1 * 0.4 + 0.9 * 0.6, 0.1 * (1 - c14) + 0.9 * c14, 0.5, 0.5]
    assert jaccard_contrastive_loss(PROTOS, PROTO_CLASS, COOC).item() == pytest.approx(sum(terms) / 8, rel=1e-6)
    # a margin only changes the push: relu(cos - 0.75) keeps (1,2)'s 0.8 and (0,2)'s 0.99, drops the 1/sqrt2 ones
    terms = [0, 0, 0, 0, 0.1 * 0.4 + 0.9 * 0, 0.1 * (1 - c14) + 0.9 * (c14 - 0.75), 0.1 + 0.5 * 0.05, 0.1 + 0.5 * 0.05]
    assert jaccard_contrastive_loss(PROTOS, PROTO_CLASS, COOC, margin=0.75).item() == \
        pytest.approx(sum(terms) / 8, rel=1e-6)
    # identical prototypes of always co-occurring classes cost nothing
    same = torch.ones(2, 3, 1)
    assert jaccard_contrastive_loss(same, torch.tensor([0, 1]), torch.ones(2, 2)).item() == pytest.approx(0.0, abs=1e-6)


def test_paper_loss_weights_swap_only_the_forms():
    ours = LossWeights(proximity=1.6, contrastive=0.3)
    paper = paper_loss_weights(ours)
    assert (paper.jaccard_contrastive, paper.contrastive, paper.prototype_contrastive) == (0.3, 0.0, 0.0)
    assert paper.diversity_pairs == "all"
    assert (paper.cluster, paper.separation, paper.proximity, paper.l1) == (ours.cluster, ours.separation, 1.6, ours.l1)
    with pytest.raises(ECGError, match="diversity_pairs"):
        LossWeights(diversity_pairs="none")


def test_contrastive_loss_by_hand():
    # threshold 0.2: related pairs are (1, 2) only.
    # record 0 has {0}: negatives = classes 1, 2 -> max(0.2, 0.4, 0.1) = 0.4
    #   class 0: relu(0.6 - 0.9 + 0.4) = 0.1
    # record 1 has {1, 2}: class 0 is unrelated to both -> negatives max(0.3, 0.6) = 0.6
    #   class 1: relu(0.6 - 0.8 + 0.6) = 0.4; class 2: relu(0.6 - 0.5 + 0.6) = 0.7
    loss = contrastive_loss(SIM, TARGETS, PROTO_CLASS, COOC, threshold=0.2, margin=0.6)
    assert loss.item() == pytest.approx((0.1 + 0.4 + 0.7) / 3)
    # if 0 and 2 co-occur too, record 1 has no negatives and record 0 only class 1's prototypes
    cooc = COOC.clone()
    cooc[0, 2] = cooc[2, 0] = 0.3
    # record 0: negatives = class 1 -> max(0.2, 0.4) = 0.4 -> relu(0.6 - 0.9 + 0.4) = 0.1
    assert contrastive_loss(SIM, TARGETS, PROTO_CLASS, cooc, threshold=0.2, margin=0.6).item() == pytest.approx(0.1)


def test_prototype_contrastive_loss_by_hand():
    # unrelated class pairs: (0, 1) and (0, 2); margin 0.5
    # cos(p0,p2)=0, cos(p0,p3)=0, cos(p1,p2)=cos(p1,p3)=1/sqrt(2), cos(p0,p4)=0.6, cos(p1,p4)=7/(5 sqrt 2)
    terms = [0, 0, 1 / math.sqrt(2) - 0.5, 1 / math.sqrt(2) - 0.5, 0.6 - 0.5, 7 / (5 * math.sqrt(2)) - 0.5]
    loss = prototype_contrastive_loss(PROTOS, PROTO_CLASS, COOC, threshold=0.2, margin=0.5)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_l1_offclass_loss_by_hand():
    weight = torch.tensor([[1.0, 1.0, -0.5, -0.5, -0.5],
                           [-1.0, 2.0, 1.0, 1.0, 0.25],
                           [0.0, 0.0, 3.0, -3.0, 1.0]])
    identity = torch.nn.functional.one_hot(PROTO_CLASS, 3).float()
    # off-class: row 0 -> 1.5; row 1 -> 1 + 2 + 0.25; row 2 -> 3 + 3
    assert l1_offclass_loss(weight, identity).item() == pytest.approx(1.5 + 3.25 + 6.0)


# ---------------------------------------------------------------- total loss on a model
LABELS = ("SR", "AFIB", "IMI", "LVH", "NORM")


def _tiny_model() -> ProtoECGNet:
    branches = {
        "rhythm": BranchConfig(kind="1d", widths=(8,), time_strides=(8,), prototype_channels=4,
                               prototypes_per_class=2, prototype_mode="pooled"),
        "morphology": BranchConfig(kind="2d", widths=(4,), time_strides=(8,), lead_strides=(4,),
                                   prototype_channels=4, prototypes_per_class=2, prototype_mode="partial"),
        "global": BranchConfig(kind="2d", widths=(4,), time_strides=(8,), lead_strides=(4,),
                               prototype_channels=4, prototypes_per_class=2, prototype_mode="full"),
    }
    torch.manual_seed(0)
    return ProtoECGNet(ProtoECGNetConfig(labels=LABELS, branches=branches))


def test_total_loss_combines_terms_and_reaches_prototypes():
    model = _tiny_model().train()
    x = torch.randn(4, 12, 1000)
    y = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 0, 0, 1], [1, 0, 0, 1, 0]], dtype=torch.float32)
    cooc = jaccard_cooccurrence(y.numpy())
    pw = pos_weight_from_labels(y.numpy())
    out = model(x)
    weights = LossWeights(fusion_ce=0.5)
    terms = total_loss(out, y, weights, pos_weight=pw, cooccurrence=cooc)
    expected = sum(getattr(weights, k) * v for k, v in terms.items() if k != "total")
    assert set(terms) == {"total", "branch_ce", "fusion_ce", "cluster", "separation", "diversity", "contrastive",
                          "prototype_contrastive", "l1", "fusion_l1"}
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["branch_ce"].item() == pytest.approx(classification_loss(out.branch_logits_full, y, pw).item())
    # cluster: pooled over branches = mean over every (record, present class) pair
    per_branch = []
    for name in model.branch_names:
        idx = out.class_index[name]
        sub = y[:, idx]
        best = torch.stack([out.similarities[name][:, out.prototype_class[name] == c].amax(1)
                            for c in range(len(idx))], 1)
        per_branch.append((1 - best)[sub > 0])
    assert terms["cluster"].item() == pytest.approx(torch.cat(per_branch).mean().item(), rel=1e-6)
    # scaled -0.5 init: off-class weights sum to 0.5 per class, except NORM, alone in its branch
    assert terms["l1"].item() == pytest.approx(0.5 * 4, rel=1e-6)
    terms["total"].backward()
    for name, branch in model.branches.items():
        grad = branch.prototype_layer.prototypes.grad
        assert grad is not None and grad.abs().sum() > 0, name
        assert branch.backbone.stem[0].weight.grad.abs().sum() > 0


def test_total_loss_with_the_paper_forms():
    model = _tiny_model()
    out = model(torch.randn(3, 12, 1000))
    y = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 0, 0, 1]], dtype=torch.float32)
    cooc = torch.as_tensor(jaccard_cooccurrence(y.numpy()), dtype=torch.float32)
    weights = paper_loss_weights()
    terms = total_loss(out, y, weights, cooccurrence=cooc)
    assert "jaccard_contrastive" in terms and "contrastive" not in terms and "prototype_contrastive" not in terms
    pooled_pairs = []
    for name in model.branch_names:
        idx = out.class_index[name]
        protos, cls = out.prototypes[name], out.prototype_class[name]
        n = len(cls)
        if n > 1:
            pooled_pairs.append((diversity_loss(protos, cls, pairs="all"), n * (n - 1)))
    expected = sum(v * k for v, k in pooled_pairs) / sum(k for _, k in pooled_pairs)
    assert terms["diversity"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ECGError, match="co-occurrence"):
        total_loss(out, y, weights)


def test_total_loss_skips_zero_weights_and_needs_cooccurrence():
    model = _tiny_model()
    out = model(torch.randn(2, 12, 1000))
    y = torch.tensor([[1, 0, 0, 0, 1], [0, 1, 1, 0, 0]], dtype=torch.float32)
    only_ce = LossWeights(cluster=0, separation=0, diversity=0, contrastive=0, prototype_contrastive=0, l1=0,
                          fusion_l1=0)
    terms = total_loss(out, y, only_ce)
    assert set(terms) == {"total", "branch_ce"}
    with pytest.raises(ECGError, match="co-occurrence"):
        total_loss(out, y, LossWeights())
