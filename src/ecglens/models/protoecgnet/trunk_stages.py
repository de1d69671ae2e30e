"""ProtoECGNet on a trained baseline's body (``TrunkRecipe``): its five stages, declared for the shared ``StageRunner``.

1. ``finetune``: every parameter (the baseline's body, the branches' add-ons and prototypes, the related head)
   on BCE of the fused logits, the recipe's prototype losses (scaled), the distillation term (the cross-entropy
   of the fused logits against the baseline's probabilities on the training records) and ``loop_l1`` times the L1
   of the head's weights from other statements' prototypes. The best validation macro AUROC epoch is kept.
2. ``projection``: every prototype becomes its best real training window (``ProtoStages``'s).
3. ``refine``: the same training with the prototypes frozen and set back onto their source windows after every
   epoch, so the network adapts to prototypes that stay real patches.
4. ``reprojection``: projection once more (each prototype is its source patch: nothing moves).
5. ``head``: the related head re-fitted on the fixed prototype scores once per L1 of ``head_l1`` (relating the
   recipe's groups as well, where the loop related co-occurrence only; targets the labels, or with ``head_distill``
   mixed with the baseline's probabilities); the best validation macro AUROC among the
   candidates whose called validation statements keep their explanations case-based is kept.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ...datasets import jaccard_cooccurrence
from ...errors import ConfigError
from ...training import (
    RecordDataset,
    Stage,
    StageRun,
    Validation,
    barrier,
    is_main,
    save_checkpoint,
)
from .config import BranchConfig, ProtoECGNetConfig
from .heads import (
    called_explanations,
    fit_fusion_on_scores,
    predict_heads,
    related_facts,
)
from .losses import classification_loss, head_targets, pos_weight_from_labels, total_loss
from .model import ProtoECGNet
from .projection import project_onto_training, sync_prototypes
from .recipe import ProtoTrainConfig, TrainingData, branch_map_for
from .stages import ProtoStages

TRUNK_STAGES = ("finetune", "projection", "refine", "reprojection", "head")
PROTOTYPE_TERMS = ("cluster", "separation", "diversity", "contrastive", "prototype_contrastive", "jaccard_contrastive",
                   "proximity")


def trunk_network(recipe: ProtoTrainConfig, baseline, labels: list[str], train_y: np.ndarray,
                  relations: dict[str, Any] | None = None) -> ProtoECGNet:
    """A new ProtoECGNet whose branches read ``baseline``'s trained xresnet1d body (a baseline ``Classifier``)
    at ``recipe.trunk.stages``, with the related head over ``relations`` (``related_facts``; default the training
    co-occurrence without groups, the loop's); add-ons, prototypes and head start untrained, the body with the
    baseline's weights."""
    from ..xresnet1d import XResNetConfig

    t = recipe.trunk
    branches = {name: BranchConfig(kind="trunk", prototype_channels=t.prototype_channels,
                                   prototypes_per_class=b.prototypes_per_class, trunk_stage=t.stages.get(name),
                                   prototype_mode=b.prototype_mode, prototype_seconds=b.prototype_seconds)
                for name, b in recipe.branches.items()}
    config = ProtoECGNetConfig(labels=tuple(labels), branch_map=branch_map_for(labels), branches=branches,
                               fusion="related", trunk=XResNetConfig.from_dict(baseline.config["recipe"]["model"]),
                               **(relations or related_facts(train_y, labels, replace(recipe, related_groups=None))))
    model = ProtoECGNet(config)
    model.trunk.load_features(baseline.model.state_dict())
    return model


def load_baseline(path) -> Any:
    """The trained baseline ``Classifier`` at ``path`` (checkpoint, run directory or shipped name) whose body a trunk
    model reads; ``ConfigError`` naming it when it is another kind of model."""
    from ..loading import load_classifier

    baseline = load_classifier(path, device="cpu")
    if baseline.config.get("kind") != "baseline":
        raise ConfigError(path, f"--trunk needs a trained baseline (an xresnet1d), not a {baseline.config.get('kind')} "
                                "checkpoint")
    if abs(baseline.sampling_rate - 100.0) > 1e-6:
        raise ConfigError(path, f"the baseline takes {baseline.sampling_rate:g} Hz; ProtoECGNet's branches read 100 Hz")
    return baseline


def teacher_probabilities(baseline, signals: np.ndarray) -> np.ndarray:
    """The baseline's uncalibrated probabilities on preprocessed (n, 12, t) training ``signals`` at its rate (the
    distillation targets)."""
    with baseline.raw():
        return baseline.predict_batch(signals, baseline.sampling_rate).astype(np.float32)


class TrunkStages(ProtoStages):
    """The five stages over one trunk model, its data and the baseline's training-record probabilities."""

    judged_head = "fusion"  # the branch last layers do not train here

    def __init__(self, model: ProtoECGNet, recipe: ProtoTrainConfig, data: TrainingData,
                 base_config: dict[str, Any], teacher: np.ndarray):
        super().__init__(model, recipe, data, base_config)
        self.teacher = teacher

    def declare(self) -> list[Stage]:
        t = self.recipe.trunk
        settings: dict[str, dict[str, Any]] = {
            "finetune": {"run": self._network, "trains": self._everything, "epochs": t.epochs, "lr": t.lr,
                         "select": "best", "keep_start": True},
            "projection": {"run": self._project},
            "refine": {"run": self._refine, "trains": self._all_but_prototypes, "epochs": t.refine_epochs,
                       "lr": t.refine_lr, "select": "best", "keep_start": True} if t.refine_epochs else
                      {"run": lambda run: {"refined": []}},
            "reprojection": {"run": self._project},
            "head": {"run": self._head},
        }
        return [Stage(name, save=self._save, restore=self._restore, **settings[name]) for name in TRUNK_STAGES]

    # -------------------------------------------------------- what trains
    def _everything(self, run: StageRun) -> nn.Module:
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self.model

    def _all_but_prototypes(self, run: StageRun) -> nn.Module:
        for key, p in self.model.named_parameters():
            p.requires_grad_(not key.endswith("prototype_layer.prototypes"))
        return self.model

    # ------------------------------------------------------------ bodies
    def _network(self, run: StageRun) -> dict[str, Any]:
        """The fine-tune, projecting every ``push_every`` epochs before the last (ProtoPNet's push epochs)."""
        every, last, pushed = self.recipe.trunk.push_every, self.recipe.trunk.epochs, []

        def push(_, epoch: int) -> None:
            if every and epoch % every == 0 and epoch < last:
                project_onto_training(self.model, self.data.train_x, self.data.train_y, self.data.train_ids)
                pushed.append(epoch)

        return {**self._fit_network(run, push)[0], "pushed_at_epochs": pushed}

    def _refine(self, run: StageRun) -> dict[str, Any]:
        sources = self.gallery.sources(self.data.train_ids)
        facts, _ = self._fit_network(run, lambda _, __: sync_prototypes(self.model, self.data.train_x, sources))
        return {**facts, "refined": list(self.model.branch_names)}

    def _fit_network(self, run: StageRun, epoch_end=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One Trainer run of the whole network on fused BCE + scaled prototype losses + distillation, keeping the
        best validation macro AUROC of the fused logits."""
        from ...metrics import macro_auroc

        r, t, d, model = self.recipe, self.recipe.trunk, self.data, self.model
        weights = replace(r.loss, branch_ce=0.0, fusion_ce=1.0, l1=0.0, fusion_l1=t.loop_l1,
                          **{k: getattr(r.loss, k) * t.prototype_loss_scale for k in PROTOTYPE_TERMS})
        pos_weight = pos_weight_from_labels(d.train_y, cap=r.pos_weight_cap)
        cooc = torch.as_tensor(jaccard_cooccurrence(d.train_y), dtype=torch.float32)
        k = d.train_y.shape[1]

        def loss_fn(net: nn.Module, batch):
            x, carried = batch
            y, soft = carried[:, :k], carried[:, k:]
            out = net(x)
            terms = total_loss(out, y, weights, pos_weight=pos_weight.to(x.device), cooccurrence=cooc.to(x.device))
            terms["distill"] = classification_loss(out.logits, soft, pos_weight.to(x.device))
            total = terms.pop("total") + t.distill * terms["distill"]
            return total, {name: v.detach() for name, v in terms.items()}

        def outputs(net: nn.Module, batch):
            x, y = batch
            return {"logit": net(x).logits, "target": y}

        rate, n = model.config.sampling_rate, model.config.n_samples
        train_data = RecordDataset(d.train_x, np.concatenate([d.train_y, self.teacher], axis=1), rate, n, train=True,
                                   max_shift=round(r.max_shift_s * rate))
        val_data = RecordDataset(d.val_x, d.val_y, rate, n, train=False)
        config = run.train_config(batch_size=r.batch_size, weight_decay=r.weight_decay)
        result = run.fit(loss_fn, train_data, config, checkpoint_config=self.config(run.facts), epoch_end=epoch_end,
                         validation=Validation(val_data, outputs,
                                               lambda a: {"val_macro_auroc": macro_auroc(a["target"], a["logit"])[0]},
                                               name="val_macro_auroc", mode="max"))
        return {**{k: v for k, v in result.facts.items() if k != "stage"},
                "val_macro_auroc": result.facts["best_metric"]}, result.history

    def _head(self, run: StageRun) -> dict[str, Any]:
        """Re-fit the related head (the recipe's relations) at each ``head_l1``; keep the best candidate whose
        called validation statements meet the explanation minima (else the one with the largest own share)."""
        from ...metrics import macro_auroc

        r, t, d, model = self.recipe, self.recipe.trunk, self.data, self.model
        relations = related_facts(d.train_y, d.labels, r)
        self._relate(relations)
        scores = {"train": predict_heads(model, d.train_x)["scores"], "val": predict_heads(model, d.val_x)["scores"]}
        targets = {"train": head_targets(d.train_y, self.teacher, t.head_distill), "val": d.val_y}
        pos_weight = pos_weight_from_labels(d.train_y, cap=r.pos_weight_cap)
        heads, rows = {}, {}
        for l1 in t.head_l1:
            name = f"l1 {l1:g}"
            heads[name], _ = fit_fusion_on_scores(model, "related", scores, targets, replace(r, related_l1=l1),
                                                  run.seed, model.config.related_pairs(), pos_weight)
            with torch.no_grad():
                z = heads[name](torch.from_numpy(scores["val"])).double().numpy()
            _, stats = called_explanations(heads[name], d.labels, scores["val"], z, d.val_y, z, d.train_y.sum(0))
            ok = (stats["own_share_median"] or 0.0) >= t.min_own_share and \
                (stats["top3_coverage_median"] or 0.0) >= t.min_top3_coverage
            rows[name] = {"related_l1": l1, "val_macro_auroc": macro_auroc(d.val_y, z)[0], "meets_minima": ok, **stats}
        meeting = [n for n in rows if rows[n]["meets_minima"]]
        kept = max(meeting, key=lambda n: rows[n]["val_macro_auroc"]) if meeting else \
            max(rows, key=lambda n: rows[n]["own_share_median"] or 0.0)
        model.fusion = heads[kept]
        return {"kept": kept, "candidates": rows, "val_macro_auroc": rows[kept]["val_macro_auroc"],
                "relations": relations}

    def _relate(self, relations: dict[str, Any]) -> None:
        """The model's related statements set to ``relations`` (``related_facts``), in its config and the base
        config every later checkpoint is saved with."""
        for key, value in relations.items():
            setattr(self.model.config, key, value)
        self.base_config["model"] = self.model.config.to_dict()

    def _restore(self, run: StageRun) -> None:
        if run.name == "head":  # the re-fitted head relates other statements than the loop's
            self._relate(run.facts["head"]["relations"])
        super()._restore(run)

    def save_final(self, out, facts: dict[str, Any], wall_s: float):
        """``<out>/model``: the network with the kept related head and the gallery; the config adds every stage's
        wall time."""
        config = self.config(facts)
        config["training"]["wall_s"] = {s: facts[s].get("wall_s") for s in TRUNK_STAGES}
        config["training"]["total_wall_s_this_call"] = wall_s
        final = out / "model"
        if is_main():
            save_checkpoint(final, self.model, config)
            self.gallery.save(final)
        barrier()
        return final
