"""ProtoECGNet's linear heads: the branch last layers and the fusion heads, trained on fixed prototype scores.

Both head stages train on the projected model's eval-mode prototype scores,
computed once, so they cost seconds. Each head run keeps its own best
validation epoch. The fusion heads: "masked" (a statement reads its branch's
prototypes), "dense" (every prototype) and "related" (``RelatedFusion``: case-based
by construction, a statement reads its own prototypes and those of the statements
it co-occurs with in the training labels). Also here: the scores the stages are
judged by (``branch_scores``) and the model's outputs on a whole array (``predict_heads``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from ...statements import statement_groups
from ...training import (
    Stage,
    StageRun,
    Validation,
    is_main,
    load_checkpoint,
    save_checkpoint,
)
from .losses import l1_offclass_loss, pos_weight_from_labels
from .prototypes import ClassConnectedLinear

if TYPE_CHECKING:
    from .model import ProtoECGNet
    from .recipe import ProtoTrainConfig, TrainingData

HEAD_FILES = {"dense": "dense_head", "related": "related_head"}  # <out>/fusion/<file>: a trained head's weights


class RelatedFusion(ClassConnectedLinear):
    """The case-based fusion head: every logit is its statement's own case evidence plus its
    related statements' case evidence, and nothing else.

    ``logit_j = bias_j + sum over j's own prototypes of w_jp s_p
    + sum over the prototypes of the statements related to j of w_jp s_p``, where
    ``related`` (k, k) is the training co-occurrence (Jaccard above a threshold,
    ``ProtoECGNetConfig.related_pairs``). Every other weight is structurally zero (the
    mask), so no statement is argued from an unrelated statement's prototypes. Own weights
    are kept non-negative (a weight below 0 acts as 0 and gets no gradient): resembling a
    statement's own cases can only argue for it; related prototypes may argue either way.
    """

    def __init__(self, prototype_class: torch.Tensor, n_classes: int, related: torch.Tensor,
                 off_class: float = -0.5):
        prototype_class = torch.as_tensor(prototype_class, dtype=torch.long)
        related = torch.as_tensor(related, dtype=torch.bool)
        own = F.one_hot(prototype_class, n_classes).T.bool()  # (k, P)
        super().__init__(prototype_class, n_classes, off_class, (own | related[:, prototype_class]).float())

    @property
    def own(self) -> torch.Tensor:
        """(k, P) bool: prototype p was made for statement j."""
        return self.class_identity.T > 0

    @property
    def related(self) -> torch.Tensor:
        """(k, P) bool: prototype p belongs to a statement related to j."""
        return (self.mask > 0) & ~self.own

    @property
    def effective_weight(self) -> torch.Tensor:
        w = self.weight * self.mask
        return torch.where(self.own, w.clamp_min(0.0), w)


def related_matrix(n_labels: int, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(k, k) bool from ``(statement, related statement)`` positions."""
    out = torch.zeros(n_labels, n_labels, dtype=torch.bool)
    for a, b in pairs:
        out[a, b] = True
    return out


def cooccurrence_pairs(y: np.ndarray, labels: Sequence[str], threshold: float) -> dict[str, dict[str, float]]:
    """The training labels' Jaccard co-occurrence above ``threshold``, as ``ProtoECGNetConfig.cooccurrence``
    stores it (both directions, rounded to 4 decimals)."""
    from ...datasets import (
        jaccard_cooccurrence,  # pandas: imported by training, not by loading a model
    )

    jaccard = jaccard_cooccurrence(y)
    out: dict[str, dict[str, float]] = {}
    for i, a in enumerate(labels):
        row = {b: round(float(jaccard[i, j]), 4) for j, b in enumerate(labels) if j != i and jaccard[i, j] > threshold}
        if row:
            out[a] = row
    return out


def related_facts(y: np.ndarray, labels: Sequence[str], recipe: ProtoTrainConfig) -> dict[str, Any]:
    """What the related fusion reads, as ``ProtoECGNetConfig`` stores it: the training labels' co-occurrence
    above the recipe's threshold and, with ``recipe.related_groups``, the statement table's groups of ``labels``."""
    groups = {s: g for s, g in statement_groups(recipe.related_groups).items() if s in labels} \
        if recipe.related_groups else {}
    return {"cooccurrence": cooccurrence_pairs(y, labels, recipe.related_threshold),
            "related_threshold": recipe.related_threshold, "related_groups": groups or None}


def explanation_shares(weight: np.ndarray, scores: np.ndarray, called: np.ndarray, own: np.ndarray,
                       related: np.ndarray, top: Sequence[int] = (3, 5)) -> dict[str, Any]:
    """How case-based the called statements' explanations are: over every called (record, statement), the
    medians of the share of |contributions| from the statement's own prototypes (``own_share_median``), from
    its own and related ones, and from its ``k`` largest contributions (``top<k>_coverage_median``).
    ``weight`` (statements, prototypes) is the head's effective weight, ``scores`` (records, prototypes) the
    normalised prototype scores, ``called`` (records, statements) boolean, ``own``/``related`` the head's masks."""
    rec, stmt = np.nonzero(called)
    c = np.abs(scores[rec] * weight[stmt])
    total = np.maximum(c.sum(1), 1e-12)
    own_share = (c * own[stmt]).sum(1) / total
    both_share = (c * (own[stmt] | related[stmt])).sum(1) / total
    ordered = -np.sort(-c, axis=1)
    out = {"n_called": len(rec), "called_per_record": float(called.sum(1).mean()),
           "own_share_median": float(np.median(own_share)) if len(rec) else None,
           "own_related_share_median": float(np.median(both_share)) if len(rec) else None,
           "nonzero_weights_per_statement_median": float(np.median((weight != 0).sum(1)))}
    for k in top:
        out[f"top{k}_coverage_median"] = float(np.median(ordered[:, :k].sum(1) / total)) if len(rec) else None
    return out


def called_explanations(head: RelatedFusion, labels: Sequence[str], scores: np.ndarray, z_cal: np.ndarray,
                        y_cal: np.ndarray, z: np.ndarray, train_pos: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The statements a related ``head`` calls from logits ``z`` at the calibration fitted on ``z_cal``/``y_cal``
    (as ``ecglens calibrate`` fits it; ``train_pos``: training positives per statement) and their
    ``explanation_shares``."""
    from ...calibration import fit_calibration, sigmoid
    from ...metrics.classification import calls_at

    cal = fit_calibration(list(labels), y_cal, sigmoid(z_cal), train_pos)
    called = calls_at(cal.apply_logits(z), cal.thresholds, cal.assessable)
    return called, explanation_shares(head.effective_weight.detach().numpy(), scores, called, head.own.numpy(),
                                      head.related.numpy())


def branch_scores(y: np.ndarray, probs: np.ndarray, index: Mapping[str, list[int]]) -> dict[str, float]:
    """Macro AUROC overall and per branch on its own statements (``val_auroc_<branch>``);
    ``probs`` may be probabilities or logits (AUROC only ranks)."""
    from ...metrics import (
        macro_auroc,  # sklearn: imported by training, not by loading a model
    )

    out = {"val_macro_auroc": macro_auroc(y, probs)[0]}
    for name, idx in index.items():
        out[f"val_auroc_{name}"] = macro_auroc(y[:, idx], probs[:, idx])[0]
    return out


@torch.no_grad()
def predict_heads(model: ProtoECGNet, signals: np.ndarray, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Eval-mode logits of the branch heads (``branch``) and the fusion (``fusion``) and the
    normalised prototype scores (``scores``, fusion order) of every record."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"branch": [], "fusion": [], "scores": []}
    for i in range(0, len(signals), batch_size):
        out = model(torch.from_numpy(np.array(signals[i:i + batch_size], dtype=np.float32)))
        parts["branch"].append(out.branch_logits_full.numpy())
        parts["fusion"].append(out.logits.numpy())
        parts["scores"].append(torch.cat([out.normalized[n] for n in model.branch_names], 1).numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


class ColumnHead(nn.Module):
    """One branch's last layer over its columns ``[start, stop)`` of the concatenated prototype scores."""

    def __init__(self, layer: ClassConnectedLinear, start: int, stop: int):
        super().__init__()
        self.layer, self.start, self.stop = layer, start, stop

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return self.layer(scores[:, self.start:self.stop])


def last_layer_heads(model: ProtoECGNet) -> nn.ModuleDict:
    """Every branch's last layer as a head over its columns of the prototype scores (``ColumnHead``)."""
    heads, start = {}, 0
    for name in model.branch_names:
        layer = model.branches[name].last_layer
        heads[name] = ColumnHead(layer, start, start + layer.weight.shape[1])
        start = heads[name].stop
    return nn.ModuleDict(heads)


def fusion_head(model: ProtoECGNet, kind: str, off_class: float,
                related: Sequence[tuple[int, int]] = ()) -> ClassConnectedLinear:
    """A fusion head of ``kind`` ("masked", "dense", "related") that starts from the trained branch last layers.

    Masked: the model's own fusion when it is masked (as in training), else a new masked head.
    Dense: a new head over every prototype. Related: a new
    ``RelatedFusion`` over the ``related`` pairs. Weights outside a statement's branch start
    at 0, so each statement starts by reading its own branch's prototypes with that last
    layer's weights and bias (those the head can see), and the stage starts from the
    last-layer solution instead of from scratch.
    """
    proto_class, k = model.fusion.class_identity.argmax(1), model.fusion.weight.shape[0]
    if kind == "masked":
        head = model.fusion if model.config.fusion == "masked" else ClassConnectedLinear(
            proto_class, k, off_class, model.branch_visible())
    elif kind == "dense":
        head = ClassConnectedLinear(proto_class, k, off_class)
    elif kind == "related":
        head = RelatedFusion(proto_class, k, related_matrix(k, related), off_class)
    else:
        raise ValueError(f"unknown fusion head {kind!r}")
    with torch.no_grad():
        head.weight.zero_()
        start = 0
        for name in model.branch_names:
            layer = model.branches[name].last_layer
            rows = model.class_index(name)
            cols = slice(start, start + layer.weight.shape[1])
            head.weight[rows, cols] = layer.effective_weight
            head.bias[rows] = layer.bias
            start = cols.stop
    return head


def _score_sets(model: ProtoECGNet, data: TrainingData) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    scores = {part: torch.from_numpy(predict_heads(model, x)["scores"]) for part, x in
              (("train", data.train_x), ("val", data.val_x))}
    targets = {"train": np.asarray(data.train_y, dtype=np.float32), "val": np.asarray(data.val_y, dtype=np.float32)}
    return scores, targets


def train_last_layers(run: StageRun, model: ProtoECGNet, data: TrainingData,
                      recipe: ProtoTrainConfig) -> dict[str, Any]:
    """The ``last_layer`` stage: each branch's last layer (its declared ``ColumnHead``) on its own
    statements, one run each (``last_layer/<branch>``), each keeping the epoch best for that branch."""
    scores, targets = _score_sets(model, data)
    facts: dict[str, Any] = {}
    for name, head in run.module.items():
        cols = model.class_index(name).numpy()
        sets = {part: TensorDataset(scores[part], torch.from_numpy(targets[part][:, cols])) for part in scores}
        pos_weight = pos_weight_from_labels(data.train_y[:, cols], cap=recipe.pos_weight_cap)
        result = fit_head(run, recipe, head, run.dir / name, sets, pos_weight, recipe.last_layer_l1,
                          {name: list(range(len(cols)))})
        facts[name] = {k: v for k, v in result.items() if not k.startswith("val_")}
    facts.update(branch_scores(data.val_y, predict_heads(model, data.val_x)["branch"], model.config.branch_index))
    return facts


def train_fusion(run: StageRun, model: ProtoECGNet, data: TrainingData, recipe: ProtoTrainConfig) -> dict[str, Any]:
    """The ``fusion`` stage: each declared fusion head (masked: the model's own fusion; dense; related)
    in its own run (``fusion/<kind>``) keeping its own best epoch. Facts: the masked head's as ``val_*``,
    the others' as ``val_<kind>_*``. The dense and related heads' weights go to ``fusion/<HEAD_FILES[kind]>``
    (the related one with the co-occurrence it reads)."""
    scores, targets = _score_sets(model, data)
    sets = {part: TensorDataset(scores[part], torch.from_numpy(targets[part])) for part in scores}
    pos_weight = pos_weight_from_labels(data.train_y, cap=recipe.pos_weight_cap)
    index = model.config.branch_index
    facts: dict[str, Any] = {}
    for kind, head in run.module.items():
        result = fit_head(run, recipe, head, run.dir / kind, sets, pos_weight, head_l1(kind, recipe), index)
        if kind == "masked":
            facts.update(result)
        else:
            facts.update({k.replace("val_", f"val_{kind}_", 1): v for k, v in result.items() if k.startswith("val_")})
        if kind in HEAD_FILES and is_main():
            extra = related_facts(data.train_y, data.labels, recipe) if kind == "related" else {}
            save_checkpoint(run.dir / HEAD_FILES[kind], head, {"kind": f"protoecgnet-{kind}-fusion", **extra})
    return facts


def head_l1(kind: str, recipe: ProtoTrainConfig) -> float:
    """The L1 weight on a fusion head's off-class weights: ``related_l1`` for the related head (its
    off-class weights are the related statements'), ``fusion_l1`` for the others."""
    return recipe.related_l1 if kind == "related" else recipe.fusion_l1


def fit_fusion_on_scores(model: ProtoECGNet, kind: str, scores: Mapping[str, np.ndarray],
                         targets: Mapping[str, np.ndarray], recipe: ProtoTrainConfig, seed: int = 0,
                         related: Sequence[tuple[int, int]] = (), pos_weight: torch.Tensor | None = None,
                         ) -> tuple[ClassConnectedLinear, dict[str, Any]]:
    """One fusion head of ``kind`` trained as the ``fusion`` stage trains it, on given normalised prototype
    scores (``scores``/``targets`` with ``train`` and ``val`` arrays, fusion order), writing nothing.
    ``pos_weight``: the BCE's positive weights, by default from ``targets["train"]`` (pass them when those
    targets are soft, e.g. labels mixed with a teacher's probabilities).

    Returns the head at its best validation epoch and its facts. The model is not changed (a masked head
    is trained on a copy of the model's fusion). ``seed`` sets the batch order.
    """
    import copy

    source = copy.deepcopy(model) if kind == "masked" else model
    head = fusion_head(source, kind, model.config.off_class_weight, related)
    for p in head.parameters():
        p.requires_grad_(True)
    stage = Stage("fusion", run=lambda _: {}, trains=lambda _: head, epochs=recipe.fusion_epochs, lr=recipe.head_lr,
                  select="best", keep_start=True)
    run = StageRun(stage, None, {}, False, int(seed), False, head)
    sets = {part: TensorDataset(torch.as_tensor(np.asarray(scores[part], dtype=np.float32)),
                                torch.as_tensor(np.asarray(targets[part], dtype=np.float32))) for part in ("train", "val")}
    if pos_weight is None:
        pos_weight = pos_weight_from_labels(np.asarray(targets["train"]), cap=recipe.pos_weight_cap)
    facts = fit_head(run, recipe, head, None, sets, pos_weight, head_l1(kind, recipe), model.config.branch_index)
    return head.eval(), facts


def fit_head(run: StageRun, recipe: ProtoTrainConfig, head: nn.Module, run_dir: Path | None, data: dict[str, TensorDataset],
             pos_weight: torch.Tensor, l1: float, index: Mapping[str, list[int]]) -> dict[str, Any]:
    """Train one linear head (BCE + L1 on off-class weights; Adam with the recipe's head weight decay)
    and keep its best validation epoch (macro AUROC over the head's outputs; ``index`` groups them for
    the logged per-branch scores). ``run_dir`` None writes nothing."""
    bce = nn.functional.binary_cross_entropy_with_logits
    layer = head.layer if isinstance(head, ColumnHead) else head  # the same parameters under DDP

    def loss_fn(net, batch):
        s, y = batch
        ce = bce(net(s), y, pos_weight=pos_weight.to(s.device))
        penalty = l1_offclass_loss(layer.effective_weight, layer.class_identity)
        return ce + l1 * penalty, {"ce": ce.detach(), "l1": penalty.detach()}

    def outputs(net, batch):
        s, y = batch
        return {"score": torch.sigmoid(net(s)), "target": y}

    def metric(arrays):
        return branch_scores(arrays["target"], arrays["score"], index)

    config = run.train_config(batch_size=max(256, recipe.batch_size), optimizer="adam",
                              weight_decay=recipe.head_weight_decay)
    result = run.fit(loss_fn, data["train"], config, module=head, run_dir=run_dir,
                     validation=Validation(data["val"], outputs, metric, name="val_macro_auroc", mode="max"),
                     checkpoint_config={"kind": "protoecgnet-heads", "stage": run.name})
    best = max(result.history, key=lambda h: h["val_macro_auroc"])
    return {**{k: v for k, v in result.facts.items() if k != "stage"},
            **{k: v for k, v in best.items() if k.startswith("val_")}}


def fusion_variants(model: ProtoECGNet, config: dict[str, Any], fusion_dir: Path) -> dict[str, tuple[dict, dict]]:
    """Weights and config of the trained model with each fusion head: "masked" (the model's own) and
    those saved in ``fusion_dir`` ("dense", and "related" where it was trained, with its co-occurrence)."""
    out = {}
    for kind in ("masked", *HEAD_FILES):
        state, cfg = model.state_dict(), json.loads(json.dumps(config))
        if kind != "masked":
            if not (fusion_dir / HEAD_FILES[kind]).is_dir():
                continue
            head, head_config = load_checkpoint(fusion_dir / HEAD_FILES[kind])
            state = {**state, **{f"fusion.{k}": v for k, v in head.items()}}
            if kind == "related":
                cfg["model"].update({k: head_config.get(k) for k in ("cooccurrence", "related_threshold",
                                                                      "related_groups")})
        cfg["model"]["fusion"], cfg["head"] = kind, f"{kind} fusion"
        out[kind] = (state, cfg)
    return out
