"""ProtoECGNet's seven stages, declared for the shared ``StageRunner``.

1. ``warmup``: add-on layers, prototypes and branch last layers at the full learning
   rate, backbones at a fraction of it (the backbones start from scratch, not from
   ImageNet, so freezing them would waste the stage).
2. ``joint``: everything (but the fusion) with the branch classification loss and the
   prototype losses (cluster, separation, diversity, co-occurrence contrast).
3. ``projection``: every prototype becomes its best real training window (see
   ``projection``), the similarity normalisation is refitted, and each branch's
   validation macro AUROC on its own statements is measured before and after.
4. ``refine``: the branches whose validation AUROC fell at projection train again with
   their prototypes tied to their sources: the prototypes are not trained, and after
   every epoch each is set to its source window's latent patch under the new weights.
   Backbones and add-ons adapt to prototypes that stay real patches (ProtoPNet
   alternates training and projection; this is that cycle run to the end). They train
   together for all the stage's epochs, and each keeps the epoch best for its own
   validation AUROC (``refine/epochs/<n>`` holds every epoch's weights); the other
   branches stay as they are.
5. ``reprojection``: projection once more. Each prototype equals its source patch
   (cosine 1), so the search keeps it, and the branches lose nothing here, where the
   first projection of free prototypes cost the morphology branch most.
6. ``last_layer``: only the branch last layers (convex: a linear map of fixed scores) with
   an L1 penalty on off-class weights, one run per branch (``last_layer/<branch>``), each
   keeping its own best epoch (``heads``).
7. ``fusion``: the dense (every statement reads every prototype, as in the paper), the
   masked (a statement reads only its branch's prototypes) and the related (case-based: a
   statement reads its own prototypes and those of statements it co-occurs with in the
   training labels, ``heads.RelatedFusion``) fusion heads, on the branches'
   normalised prototype scores, each trained on its own (``fusion/<head>``) and keeping its
   own best validation epoch (``heads``). Every logit is a sum of prototype
   contributions plus a bias.

What trains in a stage is decided by its declaration's ``trains`` alone. Every stage
has its own directory ``<out>/<stage>/`` (trainer ``last/``, ``best/``,
``train_log.jsonl``, then ``model/`` and ``stage.json`` when it is finished).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...datasets import jaccard_cooccurrence
from ...training import (
    RecordDataset,
    Stage,
    StageRun,
    Validation,
    barrier,
    is_main,
    load_checkpoint,
    save_checkpoint,
)
from .config import FUSIONS, related_pairs
from .heads import (
    branch_scores,
    fusion_head,
    fusion_variants,
    last_layer_heads,
    predict_heads,
    related_facts,
    train_fusion,
    train_last_layers,
)
from .losses import pos_weight_from_labels, total_loss
from .model import ProtoECGNet
from .projection import (
    Gallery,
    project_onto_training,
    projection_summary,
    sync_prototypes,
)
from .recipe import ProtoTrainConfig, TrainingData

STAGES = ("warmup", "joint", "projection", "refine", "reprojection", "last_layer", "fusion")


class Refining(nn.Module):
    """The model during ``refine``: only the ``refined`` branches train, their prototypes frozen; the
    other branches stay in eval mode (so their batch-norm and similarity statistics do not move either)."""

    def __init__(self, model: ProtoECGNet, refined: Sequence[str]):
        super().__init__()
        self.model, self.refined = model, list(refined)
        for name in self.refined:
            branch = model.branches[name]
            for p in branch.parameters():
                p.requires_grad_(True)
            branch.prototype_layer.prototypes.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for name, branch in self.model.branches.items():
            if name not in self.refined:
                branch.eval()
        return self

    def forward(self, x: torch.Tensor):
        return self.model(x)


def branches_to_refine(projection_facts: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The branches whose validation macro AUROC fell at projection (the ones ``refine`` trains)."""
    pre, post = projection_facts["pre_projection"], projection_facts["post_projection"]
    return [n for n in names if post[f"val_auroc_{n}"] < pre[f"val_auroc_{n}"]]


class ProtoStages:
    """The stages over one model and one dataset, and what they share: the recipe, the checkpoint
    config every stage's model is saved with and, once projected, the prototype gallery. Projection is judged by
    the validation AUROC of ``judged_head``'s logits ("branch": the branch last layers, which train here)."""

    judged_head = "branch"

    def __init__(self, model: ProtoECGNet, recipe: ProtoTrainConfig, data: TrainingData,
                 base_config: dict[str, Any]):
        self.model, self.recipe, self.data, self.base_config = model, recipe, data, base_config
        self.index = model.config.branch_index
        self.gallery: Gallery | None = None

    def declare(self) -> list[Stage]:
        """The seven stages in order, each with what trains in it and its Trainer settings."""
        r = self.recipe
        head = {"lr": r.head_lr, "select": "best", "keep_start": True}  # fine-tuning keeps its start unless beaten
        settings: dict[str, dict[str, Any]] = {
            "warmup": {"run": self._network, "trains": self._network_without_fusion, "epochs": r.warmup_epochs,
                       "lr": r.warmup_lr, "select": "final"},
            "joint": {"run": self._network, "trains": self._network_without_fusion, "epochs": r.joint_epochs,
                      "lr": r.joint_lr, "select": "best", "patience": r.patience},
            "projection": {"run": self._project},
            "refine": {"run": self._refine, "trains": self._refined_branches, "epochs": r.refine_epochs,
                       "lr": r.refine_lr, "select": "best", "keep_start": True},
            "reprojection": {"run": self._project},
            "last_layer": {"run": lambda run: train_last_layers(run, self.model, self.data, r),
                           "trains": self._last_layers, "epochs": r.last_layer_epochs, **head},
            "fusion": {"run": lambda run: train_fusion(run, self.model, self.data, r), "trains": self._fusion_heads,
                       "epochs": r.fusion_epochs, **head},
        }
        return [Stage(name, save=self._save, restore=self._restore, **settings[name]) for name in STAGES]

    # -------------------------------------------------------- what trains
    def _network_without_fusion(self, run: StageRun) -> nn.Module:
        """warmup and joint: everything but the fusion (and, with ``freeze_last_layers``, the branch last layers)."""
        for p in self.model.parameters():
            p.requires_grad_(True)
        frozen = [self.model.fusion] + ([b.last_layer for b in self.model.branches.values()]
                                        if self.recipe.freeze_last_layers else [])
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        return self.model

    def _refined_branches(self, run: StageRun) -> nn.Module:
        return Refining(self.model, branches_to_refine(run.facts["projection"], self.model.branch_names))

    def _last_layers(self, run: StageRun) -> nn.Module:
        heads = last_layer_heads(self.model)
        for p in heads.parameters():
            p.requires_grad_(True)
        return heads

    def _fusion_heads(self, run: StageRun) -> nn.Module:
        off = self.model.config.off_class_weight
        r, d = self.recipe, self.data
        related = related_pairs(tuple(d.labels), **related_facts(d.train_y, d.labels, r))
        heads = nn.ModuleDict({kind: fusion_head(self.model, kind, off, related) for kind in FUSIONS})
        for p in heads.parameters():
            p.requires_grad_(True)
        return heads

    # ------------------------------------------------------------ bodies
    def _network(self, run: StageRun) -> dict[str, Any]:
        """warmup or joint: the declared network on the prototype losses."""
        return self._fit_network(run)[0]

    def _refine(self, run: StageRun) -> dict[str, Any]:
        """The declared ``Refining`` branches, trained together for all the stage's epochs. After every
        epoch each refined branch's weights are saved (``refine/epochs/<n>``; epoch 0 is the projected
        model), and each branch ends with its own best epoch by its own validation AUROC: the overall
        macro AUROC is mostly the morphology branch's and would choose the epoch for the small branches too."""
        model, data, refined = self.model, self.data, run.module.refined
        facts: dict[str, Any] = {"refined": refined}
        if refined:
            sources = self.gallery.sources(data.train_ids, refined)
            snapshots = run.dir / "epochs"

            def snapshot(epoch: int) -> None:
                if is_main():
                    state = {f"{b}.{k}": v for b in refined for k, v in model.branches[b].state_dict().items()}
                    save_checkpoint(snapshots / str(epoch), state, {"kind": "protoecgnet-refine-epoch", "epoch": epoch})

            def epoch_end(_, epoch: int) -> None:
                sync_prototypes(model, data.train_x, sources)
                snapshot(epoch)

            if not (snapshots / "0").is_dir():
                snapshot(0)
            barrier()
            run_facts, history = self._fit_network(run, epoch_end)
            barrier()
            facts.update({k: v for k, v in run_facts.items() if not k.startswith("val_")})
            facts["best_epoch_per_branch"] = {}
            for name in refined:
                best = max(history, key=lambda h: h[f"val_auroc_{name}"])["epoch"]
                state, _ = load_checkpoint(snapshots / str(best))
                model.branches[name].load_state_dict({k[len(name) + 1:]: v for k, v in state.items()
                                                      if k.startswith(f"{name}.")})
                facts["best_epoch_per_branch"][name] = int(best)
        return {**facts, **branch_scores(data.val_y, predict_heads(model, data.val_x)["branch"], self.index)}

    def _fit_network(self, run: StageRun, epoch_end: Callable[[nn.Module, int], None] | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One Trainer run of the declared network on the prototype losses, keeping the stage's selected
        epoch by validation macro AUROC; returns the stage facts and the epoch history."""
        r, d, model = self.recipe, self.data, self.model
        rate, n = model.config.sampling_rate, model.config.n_samples
        train_data = RecordDataset(d.train_x, d.train_y, rate, n, train=True,
                                   max_shift=int(round(r.max_shift_s * rate)))
        val_data = RecordDataset(d.val_x, d.val_y, rate, n, train=False)
        pos_weight = pos_weight_from_labels(d.train_y, cap=r.pos_weight_cap)
        cooc = torch.as_tensor(jaccard_cooccurrence(d.train_y), dtype=torch.float32)

        def loss_fn(net: nn.Module, batch):
            x, y = batch
            terms = total_loss(net(x), y, r.loss, pos_weight=pos_weight.to(x.device), cooccurrence=cooc.to(x.device))
            return terms["total"], {k: v.detach() for k, v in terms.items() if k != "total"}

        def outputs(net: nn.Module, batch):
            x, y = batch
            return {"score": torch.sigmoid(net(x).branch_logits_full), "target": y}

        def metric(arrays):
            return branch_scores(arrays["target"], arrays["score"], self.index)

        def warmup_groups(net):  # backbones at a fraction of the warm-up rate
            backbone = [p for b in net.branches.values() for p in b.backbone.parameters()]
            ids = {id(p) for p in backbone}
            rest = [p for p in net.parameters() if id(p) not in ids]
            return [{"params": backbone, "lr": r.warmup_lr * r.backbone_lr_scale}, {"params": rest, "lr": r.warmup_lr}]

        config = run.train_config(batch_size=r.batch_size, weight_decay=r.weight_decay)
        result = run.fit(loss_fn, train_data, config, checkpoint_config=self.config(run.facts), epoch_end=epoch_end,
                         validation=Validation(val_data, outputs, metric, name="val_macro_auroc", mode="max"),
                         param_groups=warmup_groups if run.name == "warmup" else None)
        history = result.history
        best = max(history, key=lambda h: h["val_macro_auroc"]) if config.select == "best" else history[-1]
        return {**{k: v for k, v in result.facts.items() if k != "stage"},
                **{k: v for k, v in best.items() if k.startswith("val_")}}, history

    def _project(self, run: StageRun) -> dict[str, Any]:
        """Project, refit the normalisation, build the gallery; score branches before and after."""
        model, d = self.model, self.data
        before = branch_scores(d.val_y, predict_heads(model, d.val_x)[self.judged_head], self.index)
        rows, n_cal = project_onto_training(model, d.train_x, d.train_y, d.train_ids)
        after = predict_heads(model, d.val_x)[self.judged_head]
        label_of = {int(e): [d.labels[j] for j in np.flatnonzero(row)] for e, row in zip(d.train_ids, d.train_y)}
        self.gallery = Gallery.build(rows, d.show, lambda e: label_of[int(e)], model.config.sampling_rate)
        return {"pre_projection": before, "post_projection": branch_scores(d.val_y, after, self.index),
                "calibration_records": n_cal, "logit_abs_max_val": float(np.abs(after).max()),
                "logit_std_val": float(after.std(axis=0).mean()), "projection": projection_summary(rows)}

    # ------------------------------------------------- outputs and resume
    def config(self, facts: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint config: the base config with every finished stage's facts."""
        cfg = json.loads(json.dumps(self.base_config))
        cfg["training"]["stages"] = facts
        return cfg

    def _save(self, run: StageRun) -> None:
        """``<out>/<stage>/model``: the model after the stage (with the gallery once projected)."""
        directory = run.dir / "model"
        save_checkpoint(directory, self.model, self.config(run.facts))
        if self.gallery is not None:
            self.gallery.save(directory)

    def _restore(self, run: StageRun) -> None:
        directory = run.dir / "model"
        state, _ = load_checkpoint(directory)
        self.model.load_state_dict(state)
        if (directory / "gallery.json").is_file():
            self.gallery = Gallery.load(directory)

    def save_final(self, out: Path, facts: dict[str, Any], wall_s: float) -> Path:
        """``<out>/model`` with the recipe's fusion head and ``<out>/model-<other>`` with each other one,
        each with the gallery; the config adds every stage's wall time and the run's summary."""
        config = self.config(facts)
        config["training"]["wall_s"] = {s: facts[s].get("wall_s") for s in STAGES}
        config["training"]["total_wall_s_this_call"] = wall_s
        config["training"]["summary"] = summary(facts)
        final = out / "model"
        if is_main():
            for head, (state, cfg) in fusion_variants(self.model, config, out / "fusion").items():
                directory = final if head == self.recipe.head else out / f"model-{head}"
                save_checkpoint(directory, state, cfg)
                self.gallery.save(directory)
        barrier()
        return final


def summary(facts: dict[str, Any]) -> dict[str, Any]:
    """Validation macro AUROC per stage, and per branch from before the first projection to after the last layer."""
    first, final = facts["projection"], facts["reprojection"]
    per_branch = {key: {"pre_projection": value, "post_projection": first["post_projection"][key],
                        "after_refine": facts["refine"].get(key),
                        "post_reprojection": final["post_projection"][key],
                        "after_last_layer": facts["last_layer"].get(key)}
                  for key, value in first["pre_projection"].items()}
    fusion = facts["fusion"]
    return {"val_macro_auroc": {"warmup": facts["warmup"].get("val_macro_auroc"),
                                "joint": facts["joint"].get("val_macro_auroc"),
                                "projection": first["post_projection"]["val_macro_auroc"],
                                "refine": facts["refine"].get("val_macro_auroc"),
                                "reprojection": final["post_projection"]["val_macro_auroc"],
                                "last_layer": facts["last_layer"].get("val_macro_auroc"),
                                "fusion_masked": fusion.get("val_macro_auroc"),
                                "fusion_dense": fusion.get("val_dense_macro_auroc"),
                                "fusion_related": fusion.get("val_related_macro_auroc")},
            "branches": per_branch, "refined_branches": facts["refine"].get("refined"),
            "no_branch_below_pre_projection": all(
                (v["after_last_layer"] or 0) >= v["pre_projection"] - 1e-12 for v in per_branch.values())}
