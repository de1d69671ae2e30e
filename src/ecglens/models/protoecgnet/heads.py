"""ProtoECGNet's linear heads: the branch last layers and the fusion heads, trained on fixed prototype scores.

Both head stages train on the projected model's eval-mode prototype scores,
computed once, so they cost seconds. Each head run keeps its own best
validation epoch. Also here: the scores the stages are judged by
(``branch_scores``) and the model's outputs on a whole array (``predict_heads``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ...metrics import macro_auroc
from ...training import StageRun, Validation, is_main, load_checkpoint, save_checkpoint
from .losses import l1_offclass_loss, pos_weight_from_labels
from .model import ProtoECGNet
from .prototypes import ClassConnectedLinear
from .recipe import ProtoTrainConfig, TrainingData

DENSE_HEAD = "dense_head"  # <out>/fusion/dense_head: the dense fusion head's weights


def branch_scores(y: np.ndarray, probs: np.ndarray, index: Mapping[str, list[int]]) -> dict[str, float]:
    """Macro AUROC overall and per branch on its own statements (``val_auroc_<branch>``);
    ``probs`` may be probabilities or logits (AUROC only ranks)."""
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


def fusion_head(model: ProtoECGNet, dense: bool, off_class: float) -> ClassConnectedLinear:
    """A fusion head that starts from the trained branch last layers.

    Masked: the model's own fusion. Dense: a new head over every prototype, whose weights
    outside a statement's branch start at 0. Either way each statement starts by reading its
    own branch's prototypes with that last layer's weights and bias, so the stage starts
    from the last-layer solution instead of from scratch.
    """
    head = model.fusion if not dense else ClassConnectedLinear(
        model.fusion.class_identity.argmax(1), model.fusion.weight.shape[0], off_class)
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
    """The ``fusion`` stage: the declared masked head (the model's own fusion) and dense head, each in its
    own run (``fusion/masked``, ``fusion/dense``) keeping its own best epoch; the dense head's weights go
    to ``fusion/dense_head``."""
    scores, targets = _score_sets(model, data)
    sets = {part: TensorDataset(scores[part], torch.from_numpy(targets[part])) for part in scores}
    pos_weight = pos_weight_from_labels(data.train_y, cap=recipe.pos_weight_cap)
    index = model.config.branch_index
    facts = fit_head(run, recipe, run.module["masked"], run.dir / "masked", sets, pos_weight, recipe.fusion_l1, index)
    dense = run.module["dense"]
    dense_facts = fit_head(run, recipe, dense, run.dir / "dense", sets, pos_weight, recipe.fusion_l1, index)
    facts.update({k.replace("val_", "val_dense_", 1): v for k, v in dense_facts.items() if k.startswith("val_")})
    if is_main():
        save_checkpoint(run.dir / DENSE_HEAD, dense, {"kind": "protoecgnet-dense-fusion"})
    return facts


def fit_head(run: StageRun, recipe: ProtoTrainConfig, head: nn.Module, run_dir: Path, data: dict[str, TensorDataset],
             pos_weight: torch.Tensor, l1: float, index: Mapping[str, list[int]]) -> dict[str, Any]:
    """Train one linear head (BCE + L1 on off-class weights; Adam with the recipe's head weight decay)
    and keep its best validation epoch (macro AUROC over the head's outputs; ``index`` groups them for
    the logged per-branch scores)."""
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


def fusion_variants(model: ProtoECGNet, config: dict[str, Any], dense_head: Path) -> dict[str, tuple[dict, dict]]:
    """Weights and config of the trained model with each fusion head: "masked" (the model's own)
    and "dense" (the head saved in ``dense_head``)."""
    head, _ = load_checkpoint(dense_head)
    out = {}
    for kind, state in (("masked", model.state_dict()),
                        ("dense", {**model.state_dict(), **{f"fusion.{k}": v for k, v in head.items()}})):
        cfg = json.loads(json.dumps(config))
        cfg["model"]["fusion"], cfg["head"] = kind, f"{kind} fusion"
        out[kind] = (state, cfg)
    return out
