"""ProtoECGNet losses: pure functions of tensors.

Shapes used throughout: ``sim`` (B, P) prototype similarities (cosine; the max over
windows for partial prototypes), ``targets`` (B, k) 0/1, ``proto_class`` (P,) the class
(0..k-1) each prototype was made for, ``prototypes`` (P, D, L) or (P, D).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import ConfigError, ECGError


def pos_weight_from_labels(y_train, cap: float = 20.0) -> torch.Tensor:
    """Per-class BCE positive weight ``w_c = min(n_neg / n_pos, cap)``; ``w_c = 1`` when n_pos = 0.

    The ratio balances each class's positive and negative terms; the cap keeps statements
    with a handful of positives (ratios in the hundreds on PTB-XL subsets) from dominating
    the gradient with noisy, easily over-fitted examples.
    """
    y = torch.as_tensor(np.asarray(y_train), dtype=torch.float64)
    if y.ndim != 2:
        raise ECGError(None, f"labels must be (records, classes), got shape {tuple(y.shape)}")
    n_pos = y.sum(dim=0)
    n_neg = y.shape[0] - n_pos
    ratio = torch.where(n_pos > 0, n_neg / n_pos.clamp_min(1), torch.ones_like(n_pos))
    return ratio.clamp(max=cap).float()


def classification_loss(logits: torch.Tensor, targets: torch.Tensor,
                        pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over records and classes."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pos_weight)


def head_targets(labels: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """The related head's training targets: ``(labels + weight * teacher) / (1 + weight)``. Binary cross-entropy is
    linear in its target, so BCE against these is BCE against the labels plus ``weight`` times BCE against the
    teacher's probabilities, divided by ``1 + weight``: the fine-tune's objective for the head when ``weight`` is its
    ``distill``."""
    if weight < 0:
        raise ConfigError("<head_targets>", f"the teacher's weight must be >= 0, got {weight}")
    return ((np.asarray(labels, dtype=np.float32) + weight * np.asarray(teacher, dtype=np.float32))
            / (1.0 + weight)).astype(np.float32)


def _class_max(sim: torch.Tensor, proto_class: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best similarity among each class's prototypes (B, k) and which classes have any (k,)."""
    member = F.one_hot(proto_class, n_classes).T.bool()  # (k, P)
    masked = sim[:, None, :].masked_fill(~member[None], float("-inf"))
    best = masked.amax(dim=-1)
    has = member.any(dim=1)
    return torch.where(has[None], best, torch.zeros_like(best)), has


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _cluster_terms(sim, targets, proto_class):
    best, has = _class_max(sim, proto_class, targets.shape[1])
    return 1.0 - best, (targets > 0) & has[None]


def cluster_loss(sim: torch.Tensor, targets: torch.Tensor, proto_class: torch.Tensor) -> torch.Tensor:
    """Mean over (record, present class) of ``1 - max similarity among that class's prototypes``.

    0 when every present class has a prototype matching perfectly; pairs of a class without
    prototypes are ignored; 0 when there is no pair.
    """
    return _masked_mean(*_cluster_terms(sim, targets, proto_class))


def _separation_terms(sim, targets, proto_class):
    off = targets[:, proto_class] <= 0  # (B, P): prototype of a class the record lacks
    best = sim.masked_fill(~off, float("-inf")).amax(dim=1)
    valid = off.any(dim=1)
    return torch.where(valid, best, torch.zeros_like(best)).clamp_min(0.0), valid


def separation_loss(sim: torch.Tensor, targets: torch.Tensor, proto_class: torch.Tensor) -> torch.Tensor:
    """Mean over records of ``relu(best similarity among prototypes of classes the record lacks)``.

    Minimised, it pushes the closest wrong prototype away until it is orthogonal (cosine 0);
    pushing further, toward an anti-pattern, would carry no meaning. Records with every
    class present are ignored.
    """
    return _masked_mean(*_separation_terms(sim, targets, proto_class))


def _proximity_terms(sim, targets, proto_class):
    owners = targets[:, proto_class] > 0  # (B, P): records that carry the prototype's class
    best = sim.masked_fill(~owners, float("-inf")).amax(dim=0)
    valid = owners.any(dim=0)
    return torch.where(valid, 1.0 - best, torch.zeros_like(best)), valid


def proximity_loss(sim: torch.Tensor, targets: torch.Tensor, proto_class: torch.Tensor) -> torch.Tensor:
    """Mean over prototypes of ``1 - best similarity with a record of its class`` in the batch.

    The cluster loss pulls only the best prototype of each present class, so the others can
    drift far from every real patch and projection then changes them (and the logits) a
    lot. This term (ProtoPNet's prototype-to-patch regulariser) keeps *every* prototype
    near some patch of its own class. Prototypes whose class is absent from the batch are
    ignored.
    """
    return _masked_mean(*_proximity_terms(sim, targets, proto_class))


def _flat_cosine(prototypes: torch.Tensor) -> torch.Tensor:
    flat = F.normalize(prototypes.flatten(1), dim=1)
    return flat @ flat.T


DIVERSITY_PAIRS = ("class", "all")


def _diversity_terms(prototypes, proto_class, pairs="class"):
    if pairs == "class":
        mask = proto_class[:, None] == proto_class[None, :]
    elif pairs == "all":
        mask = torch.ones(len(proto_class), len(proto_class), dtype=torch.bool, device=proto_class.device)
    else:
        raise ECGError(None, f"diversity pairs must be one of {DIVERSITY_PAIRS}, got {pairs!r}")
    mask.fill_diagonal_(False)
    return _flat_cosine(prototypes) ** 2, mask


def diversity_loss(prototypes: torch.Tensor, proto_class: torch.Tensor, pairs: str = "class") -> torch.Tensor:
    """Mean squared cosine between distinct prototypes, over ordered pairs (i != j).

    Pushes prototypes toward orthogonality, so several prototypes cover different patterns
    instead of collapsing onto one. ``pairs="class"``: pairs of the same class only (ours);
    ``"all"``: every pair in the branch (the paper's orthogonality term).
    """
    return _masked_mean(*_diversity_terms(prototypes, proto_class, pairs))


def _related(cooccurrence: torch.Tensor, threshold: float) -> torch.Tensor:
    related = cooccurrence > threshold
    return related | torch.eye(related.shape[0], dtype=torch.bool, device=related.device)


def _contrastive_terms(sim, targets, proto_class, cooccurrence, threshold, margin):
    present = targets > 0
    related = _related(cooccurrence, threshold)
    unrelated = ~((present.float() @ related.float()) > 0)  # (B, k): unrelated to every present class
    neg_proto = unrelated[:, proto_class]  # (B, P)
    neg = sim.masked_fill(~neg_proto, float("-inf")).amax(dim=1)
    has_neg = neg_proto.any(dim=1)
    best, has = _class_max(sim, proto_class, targets.shape[1])
    neg = torch.where(has_neg, neg, torch.zeros_like(neg))
    terms = torch.relu(margin - best + neg[:, None])
    return terms, present & has[None] & has_neg[:, None]


def contrastive_loss(sim: torch.Tensor, targets: torch.Tensor, proto_class: torch.Tensor,
                     cooccurrence: torch.Tensor, threshold: float = 0.05, margin: float = 0.2) -> torch.Tensor:
    """Co-occurrence-aware contrast between a record's own and unrelated prototypes.

    Classes i, j are *related* when ``cooccurrence[i, j] > threshold`` (Jaccard from the
    training labels; a class is related to itself). For record b, the prototypes of classes
    related to none of b's present classes are its negatives; prototypes of absent classes
    that do co-occur with a present one are neither pulled nor pushed (allowed to be
    similar, e.g. LVH prototypes on a VCLVH record). For each present class c:

        term(b, c) = relu(margin - max_sim(b, c) + max_sim(b, negatives of b))

    i.e. c's best prototype must beat the best unrelated prototype by ``margin``. The loss
    is the mean over (record, present class) pairs that have prototypes and negatives.
    Unlike ``separation_loss``, which pushes every absent class's prototypes away, this
    exempts co-occurring classes, so prototypes of diagnoses that appear together are not
    forced apart, while unrelated ones are ranked below the evidence by a margin.
    """
    return _masked_mean(*_contrastive_terms(sim, targets, proto_class, cooccurrence, threshold, margin))


def _prototype_contrastive_terms(prototypes, proto_class, cooccurrence, threshold, margin):
    related = _related(cooccurrence, threshold)
    unrelated = ~related[proto_class][:, proto_class]  # (P, P), also excludes same-class pairs
    return torch.relu(_flat_cosine(prototypes) - margin), unrelated


def prototype_contrastive_loss(prototypes: torch.Tensor, proto_class: torch.Tensor, cooccurrence: torch.Tensor,
                               threshold: float = 0.05, margin: float = 0.5) -> torch.Tensor:
    """Prototype-prototype term: prototypes of unrelated classes repel, co-occurring ones may cluster.

    Mean over ordered pairs (i, j) whose classes are unrelated (``cooccurrence <= threshold``)
    of ``relu(cos(p_i, p_j) - margin)``; pairs of the same or co-occurring classes are
    exempt. This shapes the prototype space itself, independent of any batch.
    """
    return _masked_mean(*_prototype_contrastive_terms(prototypes, proto_class, cooccurrence, threshold, margin))


def _jaccard_contrastive_terms(prototypes, proto_class, cooccurrence, margin):
    cos = _flat_cosine(prototypes)
    jaccard = cooccurrence[proto_class][:, proto_class].clamp(0.0, 1.0)
    terms = jaccard * (1.0 - cos) + (1.0 - jaccard) * torch.relu(cos - margin)
    return terms, proto_class[:, None] != proto_class[None, :]


def jaccard_contrastive_loss(prototypes: torch.Tensor, proto_class: torch.Tensor, cooccurrence: torch.Tensor,
                             margin: float = 0.0) -> torch.Tensor:
    """The paper's co-occurrence contrast: pull and push between prototypes, weighted by the Jaccard index.

    For prototypes i, j of different classes with Jaccard index ``J`` of their classes
    (training labels; clamped to [0, 1]):

        term(i, j) = J * (1 - cos(p_i, p_j)) + (1 - J) * relu(cos(p_i, p_j) - margin)

    so prototypes of often co-occurring diagnoses are drawn together in proportion to how
    often they co-occur, and those of diagnoses that never co-occur are pushed apart until
    their cosine is at most ``margin`` (0: orthogonal). Mean over ordered pairs of
    different classes. Ours (``contrastive_loss`` and ``prototype_contrastive_loss``) uses
    the co-occurrence only as a yes/no exemption from pushing.
    """
    return _masked_mean(*_jaccard_contrastive_terms(prototypes, proto_class, cooccurrence, margin))


def l1_offclass_loss(last_layer_weight: torch.Tensor, class_identity: torch.Tensor) -> torch.Tensor:
    """Sum of |w| over off-class connections: weight (k, P), class_identity (P, k) one-hot.

    Drives each class toward reading only its own prototypes (sparse, readable reasons).
    """
    return (last_layer_weight * (1.0 - class_identity.T)).abs().sum()


@dataclass
class LossWeights:
    """Coefficients of ``total_loss`` (a zero weight skips the term).

    branch_ce 1.0: each branch learns its statements through its own last layer (the
        paper trains branches separately, then the fusion).
    fusion_ce 0.0: the fusion classifier gets its own final stage; set 1.0 there.
    cluster 0.8, separation 0.08: ProtoPNet's coefficients; cluster is the stronger pull
        (evidence must be near a prototype), separation a weak push.
    diversity 0.1: mean squared cosine is in [0, 1]; a light pressure against duplicates.
    contrastive 0.1, prototype_contrastive 0.05: the co-occurrence terms, kept below cluster
        so they shape rather than dominate the latent space.
    jaccard_contrastive 0.0, jaccard_margin 0.0: the paper's Jaccard-weighted pull/push between
        prototypes (``jaccard_contrastive_loss``); ``paper_loss_weights`` turns it on in place of
        the two terms above.
    diversity_pairs "class": which prototype pairs diversity penalises ("all": the paper's).
    l1 1e-4, fusion_l1 1e-4: ProtoPNet's last-layer sparsity coefficient (the loss is a sum
        over many weights).
    proximity 0.0: every prototype near a patch of its class (``proximity_loss``); the
        training recipe turns it on.
    cooccurrence_threshold 0.05: Jaccard above which two statements count as co-occurring.
    contrastive_margin 0.2 (record term) and prototype_margin 0.5 (prototype term): cosine
        margins.
    """

    branch_ce: float = 1.0
    fusion_ce: float = 0.0
    cluster: float = 0.8
    separation: float = 0.08
    diversity: float = 0.1
    contrastive: float = 0.1
    prototype_contrastive: float = 0.05
    l1: float = 1e-4
    fusion_l1: float = 1e-4
    cooccurrence_threshold: float = 0.05
    contrastive_margin: float = 0.2
    prototype_margin: float = 0.5
    proximity: float = 0.0
    jaccard_contrastive: float = 0.0
    jaccard_margin: float = 0.0
    diversity_pairs: str = "class"

    def __post_init__(self):
        if self.diversity_pairs not in DIVERSITY_PAIRS:
            raise ECGError(None, f"diversity_pairs must be one of {DIVERSITY_PAIRS}, got {self.diversity_pairs!r}")


def paper_loss_weights(weights: LossWeights | None = None) -> LossWeights:
    """``weights`` with the paper's prototype terms in place of ours: the Jaccard-weighted pull/push
    (at the weight of our record-level contrast) instead of the two exemption terms, and diversity over
    every prototype pair. Every other coefficient is kept, so a comparison changes only the forms."""
    w = weights or LossWeights()
    return replace(w, jaccard_contrastive=w.contrastive, contrastive=0.0, prototype_contrastive=0.0,
                   diversity_pairs="all")


def _pooled(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    values = torch.cat([v.flatten() for v, _ in pairs])
    mask = torch.cat([m.flatten() for _, m in pairs])
    return _masked_mean(values, mask)


def total_loss(outputs, targets: torch.Tensor, weights: LossWeights | None = None, *,
               pos_weight: torch.Tensor | None = None,
               cooccurrence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Weighted sum of the losses on a ``ProtoECGNetOutput``; returns ``{"total": ..., term: ...}``.

    Prototype terms are computed per branch (a branch's prototypes live in its own latent
    space and only see its own statements) and pooled: each is the mean over all valid
    (record, class) / record / prototype-pair terms of all branches. ``cooccurrence`` is
    the (k, k) Jaccard matrix over all labels (``ecglens.datasets.jaccard_cooccurrence`` of the
    training labels); it is required when a contrastive weight is non-zero. Only terms with a
    non-zero weight are computed and reported.
    """
    w = weights or LossWeights()
    targets = targets.to(outputs.logits.dtype)
    names = list(outputs.similarities)
    needs_cooc = w.contrastive != 0 or w.prototype_contrastive != 0 or w.jaccard_contrastive != 0
    if needs_cooc:
        if cooccurrence is None:
            raise ECGError(None, "contrastive losses need the label co-occurrence matrix (datasets.jaccard_cooccurrence)")
        cooccurrence = torch.as_tensor(cooccurrence, device=targets.device)
    sub = {n: targets[:, outputs.class_index[n]] for n in names}
    cooc = ({n: cooccurrence[outputs.class_index[n]][:, outputs.class_index[n]] for n in names}
            if needs_cooc else {})
    terms: dict[str, torch.Tensor] = {}
    if w.branch_ce:
        terms["branch_ce"] = classification_loss(outputs.branch_logits_full, targets, pos_weight)
    if w.fusion_ce:
        terms["fusion_ce"] = classification_loss(outputs.logits, targets, pos_weight)
    if w.cluster:
        terms["cluster"] = _pooled([_cluster_terms(outputs.similarities[n], sub[n], outputs.prototype_class[n])
                                    for n in names])
    if w.separation:
        terms["separation"] = _pooled([_separation_terms(outputs.similarities[n], sub[n], outputs.prototype_class[n])
                                       for n in names])
    if w.diversity:
        terms["diversity"] = _pooled([_diversity_terms(outputs.prototypes[n], outputs.prototype_class[n],
                                                       w.diversity_pairs) for n in names])
    if w.contrastive:
        terms["contrastive"] = _pooled([
            _contrastive_terms(outputs.similarities[n], sub[n], outputs.prototype_class[n], cooc[n],
                               w.cooccurrence_threshold, w.contrastive_margin) for n in names])
    if w.prototype_contrastive:
        terms["prototype_contrastive"] = _pooled([
            _prototype_contrastive_terms(outputs.prototypes[n], outputs.prototype_class[n], cooc[n],
                                         w.cooccurrence_threshold, w.prototype_margin) for n in names])
    if w.jaccard_contrastive:
        terms["jaccard_contrastive"] = _pooled([
            _jaccard_contrastive_terms(outputs.prototypes[n], outputs.prototype_class[n], cooc[n], w.jaccard_margin)
            for n in names])
    if w.proximity:
        terms["proximity"] = _pooled([_proximity_terms(outputs.similarities[n], sub[n], outputs.prototype_class[n])
                                      for n in names])
    if w.l1:
        terms["l1"] = sum(l1_offclass_loss(outputs.last_layer_weight[n], outputs.class_identity[n]) for n in names)
    if w.fusion_l1:
        terms["fusion_l1"] = l1_offclass_loss(outputs.fusion_weight, outputs.fusion_class_identity)
    total = sum(getattr(w, name) * value for name, value in terms.items())
    return {"total": total, **terms}
