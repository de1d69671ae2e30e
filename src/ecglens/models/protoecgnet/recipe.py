"""ProtoECGNet's training recipe (``ProtoTrainConfig``) and the data every stage trains on."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ...configs import config_from_dict, config_to_dict
from ...errors import ConfigError
from ...preprocess import Bandpass, FixLength, Pipeline, Resample, Scale, Standardize
from ...statements import GROUP_COLUMNS
from ...training import skipped_facts
from ..splits import load_train_val
from .branches import load_branch_table
from .config import FUSIONS, BranchConfig, default_branches
from .losses import LossWeights, paper_loss_weights
from .options import EPOCH_STAGES, LOSS_FORMS, NORMALIZE

# Statements outside the bundled 71-statement table (superclasses, subclasses) route here.
OTHER_BRANCH = {"NORM": "global"}
DEFAULT_OTHER = "morphology"


@dataclass
class TrunkRecipe:
    """ProtoECGNet on a trained baseline's body (``ecglens train protoecgnet --trunk BASELINE``; issue 25).

    The three branches read the baseline's xresnet1d body (``stages``: the residual stage a branch reads,
    default the last; morphology on stage 3 keeps a match within ~4 s of its window) through their own
    ``prototype_channels``-wide add-ons and prototypes, with the related head in the loop (co-occurring
    statements only, ``loop_l1`` on its related weights). Stages: ``finetune`` (every parameter, ``epochs``
    at ``lr``, projecting the prototypes every ``push_every`` epochs before its last (0: never), BCE of the fused
    logits + the recipe's prototype losses times ``prototype_loss_scale`` + ``distill`` times the cross-entropy
    against the baseline's probabilities on the training records + ``loop_l1`` times the L1 of the head's related
    weights; best validation macro AUROC), ``projection``, ``refine`` (prototypes tied to their sources,
    ``refine_epochs`` at ``refine_lr``, the same loss), ``reprojection`` and ``head``: the related head (with
    ``ProtoTrainConfig.related_groups``) re-fitted on the fixed prototype scores at each L1 of ``head_l1``, keeping
    the best validation macro AUROC among those whose called validation statements have median own share >=
    ``min_own_share`` and top-3 coverage >= ``min_top3_coverage``; ``head_distill`` weighs the baseline's
    probabilities in the head's training targets as ``distill`` does in the network's (0: the labels only;
    ``losses.head_targets``).

    Chosen on fold 9 (``bench/results/protoecgnet_trunk.md``, ``protoecgnet_variants.md``). ``loop_l1`` 0.001 with
    the finer ``head_l1`` grid: 0.899 +/- 0.006 over 5 seeds against 0.890 +/- 0.010 for the same seeds with 0 and
    0.001/0.002 (the recipe shipped before this one; paired +0.009, SE 0.005): with the L1 in the loop a statement's
    evidence settles on its own prototypes (own share 0.67-0.73 at head L1 0.001 against 0.52-0.58), so a weaker
    head L1 (0.0005-0.0007) meets the explanation minima; without it they cost 0.003-0.008. Read once on fold 10
    (5 seeds): 0.878 +/- 0.010, external 0.768; superdiagnostic (3 seeds) 0.929. Level or lower there:
    ``push_every`` 5 or 10 (projection costs 0.02 instead of 0.06, the final model ends level), ``refine_epochs``
    20, 9 morphology prototypes per class and the paper's 5 / 18 / 7 (a statement's evidence spreads, so top-3
    coverage falls), 2 (2 seeds), morphology prototypes 0.5 s long (+0.005 over 7 paired seeds, SE 0.004, with less of a match's
    gradient near its shorter window) or 0.75 s, and ``head_distill`` 3 (lower at every head L1 on 2 seeds).
    """

    epochs: int = 30
    lr: float = 3e-3
    refine_epochs: int = 10
    refine_lr: float = 1e-3
    distill: float = 3.0
    prototype_loss_scale: float = 0.25
    loop_l1: float = 1e-3
    push_every: int = 0
    prototype_channels: int = 32
    stages: dict[str, int] = field(default_factory=lambda: {"morphology": 3})
    head_l1: tuple[float, ...] = (5e-4, 7e-4, 1e-3, 1.5e-3, 2e-3)
    min_own_share: float = 0.5
    min_top3_coverage: float = 0.5
    head_distill: float = 0.0

    def __post_init__(self):
        self.head_l1 = tuple(float(v) for v in self.head_l1)
        self.stages = {str(k): int(v) for k, v in self.stages.items()}
        src = "<TrunkRecipe>"
        if self.epochs < 1 or self.refine_epochs < 0 or self.push_every < 0:
            raise ConfigError(src, "epochs must be at least 1, refine_epochs and push_every at least 0")
        if not self.head_l1 or min(self.head_l1) < 0:
            raise ConfigError(src, f"head_l1 must list L1 weights >= 0, got {self.head_l1}")
        if min(self.distill, self.prototype_loss_scale, self.loop_l1, self.head_distill) < 0:
            raise ConfigError(src, "distill, prototype_loss_scale, loop_l1 and head_distill must be >= 0")


@dataclass
class ProtoTrainConfig:
    """The training recipe: epochs and learning rates per stage, loss weights, data handling.

    Epochs are maxima: ``joint`` stops early after ``patience`` epochs without a better
    validation macro AUROC and keeps its best epoch; ``refine`` keeps its best epoch too,
    at the lower ``refine_lr`` (it adapts a trained network, it does not retrain it).
    Measured on the local set ("all", folds 1-8 / 9, one run each from the same projected
    model): validation macro AUROC of the masked fusion 0.821 without refine, 0.841 with 6
    epochs of refine on all branches with free re-projection, 0.851 with 10 epochs on the
    branches that lost at projection with prototypes tied to their sources (20: 0.851).
    With each branch selected on its own AUROC and 20 epochs (from the same projected model,
    scale): the morphology branch reached 0.860 against 0.845 with 10 epochs, above its
    pre-projection 0.859, and after the last layer every branch was at or above its
    pre-projection score. Refine runs all its epochs (no early stop): its first epochs, at a
    rising learning rate, fall below the projected model before they climb above it.
    ``related_l1`` / ``related_threshold``: the related (case-based) fusion head's L1 on its
    related-statement weights and the Jaccard above which two statements are related;
    ``related_groups``: a column of the statement table ("diagnostic_class") whose groups relate
    their statements as well (``ProtoECGNetConfig.related_groups``; None: co-occurrence only).
    ``head``: the fusion the final ``model`` carries. "dense" by default: on the local set
    (seed 0, scale) it reached validation macro AUROC 0.887 against 0.868 for the masked
    head, and test 0.833 against 0.814. ``last_layer_l1`` weighs the L1 on
    off-class last-layer weights (ProtoPNet's 1e-4 is for a sum over 2000 weights; ours
    are fewer). ``head_weight_decay``: L2 (Adam) on the linear heads, whose fixed features
    over-fit quickly (on the local set it raised validation macro AUROC 0.82 -> 0.83).
    ``normalize``: "scale" (default: one per-lead mean and standard deviation fitted on the
    training set and stored in the pipeline, so amplitudes stay comparable between records,
    which voltage criteria need) or "standardize" (per record and lead). Measured on the
    local set (seed 0): validation macro AUROC after joint training 0.877 vs 0.856, of the
    masked fusion 0.868 vs 0.851. ``max_shift_s``: random time shift (zero fill) as augmentation. ``loss.proximity``
    keeps every prototype near a real patch, so projection changes them less. Measured on
    the local set (folds 1-8 / 9, one run each): the mean cosine between a prototype and
    the patch it was projected onto was 0.18 without the term, 0.34 at weight 0.8 and 0.49
    at 1.6; validation macro AUROC lost at projection 0.078, 0.081 and 0.060. With the
    term, the rhythm and global branches lose nothing at projection; morphology still does.
    ``freeze_last_layers``: the branch last layers keep their class-connection start (1 own
    class, ``off_class_weight`` otherwise) through warm-up and joint training and are fitted
    only in ``last_layer``, as in the paper (ours trains them throughout); ``recipe_with_losses``
    sets it with the paper's loss forms. Ours stay the default: over 2 seeds of the whole pipeline on a
    shortened schedule (``bench/results/protoecgnet_losses.md``, fold 9) the two forms ended level
    (dense head 0.854 ours vs 0.849 paper, related head 0.777 vs 0.779); the paper's frozen last
    layers hold joint training at 0.755 (0.844-0.866 ours), so its projection costs less only
    because it starts lower. ``trunk``: train on a trained baseline's body instead (``TrunkRecipe``; its own
    stages replace the seven above).
    """

    warmup_epochs: int = 2
    joint_epochs: int = 20
    refine_epochs: int = 20
    last_layer_epochs: int = 30
    fusion_epochs: int = 30
    batch_size: int = 64
    warmup_lr: float = 3e-3
    backbone_lr_scale: float = 0.1
    joint_lr: float = 3e-3
    refine_lr: float = 1e-3
    head_lr: float = 1e-2
    weight_decay: float = 1e-4
    patience: int | None = 4
    max_shift_s: float = 0.5
    pos_weight_cap: float = 20.0
    last_layer_l1: float = 1e-4
    fusion_l1: float = 1e-4
    related_l1: float = 1e-4
    related_threshold: float = 0.05
    related_groups: str | None = None
    head_weight_decay: float = 1e-2
    bandpass: tuple[float, float] = (0.5, 40.0)
    normalize: str = "scale"
    head: str = "dense"
    loss: LossWeights = field(default_factory=lambda: LossWeights(proximity=1.6, l1=1e-4))
    freeze_last_layers: bool = False
    branches: dict[str, BranchConfig] = field(default_factory=default_branches)
    max_records: int | None = None
    trunk: TrunkRecipe | None = None

    def __post_init__(self):
        self.branches = {n: b if isinstance(b, BranchConfig) else BranchConfig(**b) for n, b in self.branches.items()}
        self.bandpass = tuple(float(v) for v in self.bandpass)
        src = "<ProtoTrainConfig>"
        if self.head not in FUSIONS:
            raise ConfigError(src, f"head must be one of {FUSIONS}, got {self.head!r}")
        if self.normalize not in NORMALIZE:
            raise ConfigError(src, f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        if self.related_groups not in (None, *GROUP_COLUMNS):
            raise ConfigError(src, f"related_groups must be one of {GROUP_COLUMNS} or None, got {self.related_groups!r}")
        for name in EPOCH_STAGES:
            if getattr(self, f"{name}_epochs") < 1:
                raise ConfigError(src, f"{name}_epochs must be at least 1")

    def pipeline(self, sampling_rate: float = 100.0) -> Pipeline:
        """Model input before any fitted step: resample, band-pass, (``normalize='standardize'``:
        per-record, per-lead standardisation,) exactly 10 s. With ``'scale'`` the training set's
        per-lead ``Scale`` is appended once fitted (``fit_pipeline``)."""
        if self.normalize == "scale":
            return self.display_pipeline(sampling_rate)
        return Pipeline((Resample(sampling_rate), Bandpass(*self.bandpass), Standardize(), FixLength(10.0)))

    def fit_pipeline(self, pipeline: Pipeline, train_x: np.ndarray) -> tuple[Pipeline, Callable[[np.ndarray], np.ndarray]]:
        """The stored pipeline and the transform still owed to arrays made with ``pipeline``."""
        if self.normalize != "scale":
            return pipeline, lambda x: x
        scale = Scale.fit(train_x[i] for i in range(len(train_x)))
        return pipeline.then(scale), lambda x: scale.apply(np.asarray(x), 0.0)[0]  # Scale ignores the rate

    def display_pipeline(self, sampling_rate: float = 100.0) -> Pipeline:
        """What the gallery stores and figures show: the same, in mV (no standardisation)."""
        return Pipeline((Resample(sampling_rate), Bandpass(*self.bandpass), FixLength(10.0)))

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ProtoTrainConfig:
        return config_from_dict(cls, d)


def recipe_with_losses(recipe: ProtoTrainConfig, form: str) -> ProtoTrainConfig:
    """``recipe`` with ``form``'s prototype losses: "ours" as given, "paper" the paper's forms
    (``paper_loss_weights``: Jaccard-weighted pull/push, diversity over every pair) and the branch
    last layers frozen until their own stage."""
    if form not in LOSS_FORMS:
        raise ConfigError("<ProtoTrainConfig>", f"losses must be one of {LOSS_FORMS}, got {form!r}")
    if form == "ours":
        return recipe
    return replace(recipe, loss=paper_loss_weights(recipe.loss), freeze_last_layers=True)


def recipe_with_prototypes(recipe: ProtoTrainConfig, counts: dict[str, int] | None = None,
                           seconds: dict[str, float] | None = None) -> ProtoTrainConfig:
    """``recipe`` with ``counts`` prototypes per class (``--prototypes-per-class``; the paper has 5 / 18 / 7 for
    rhythm / morphology / global) and prototypes ``seconds`` long (``--prototype-seconds``; partial prototypes) in
    the named branches; ConfigError naming an unknown branch, a count below 1 or a length not above 0."""
    counts, seconds = counts or {}, seconds or {}
    unknown = (set(counts) | set(seconds)) - set(recipe.branches)
    if unknown or any(c < 1 for c in counts.values()) or any(v <= 0 for v in seconds.values()):
        raise ConfigError("<ProtoTrainConfig>", f"prototypes: branches are {tuple(recipe.branches)}, counts at least 1 "
                                                f"and lengths above 0 s, got counts {counts} and seconds {seconds}")
    return replace(recipe, branches={n: replace(b, prototypes_per_class=counts.get(n, b.prototypes_per_class),
                                                prototype_seconds=seconds.get(n, b.prototype_seconds))
                                     for n, b in recipe.branches.items()})


def whole_record(pipeline: Pipeline) -> Pipeline:
    """``pipeline`` without its fixed-length step: what a checkpoint stores, so that a record keeps its
    length and the classifier scores all of it by windows (training arrays stay exactly 10 s)."""
    return Pipeline(tuple(s for s in pipeline.steps if not isinstance(s, FixLength)))


def branch_map_for(labels: Sequence[str]) -> dict[str, str] | None:
    """None when every label is in the bundled table; else the table plus ``OTHER_BRANCH``
    (NORM -> global) and ``DEFAULT_OTHER`` (morphology) for the other statements."""
    table = load_branch_table()
    if all(s in table for s in labels):
        return None
    return {s: table.get(s, OTHER_BRANCH.get(s, DEFAULT_OTHER)) for s in labels}


@dataclass
class TrainingData:
    """The model-ready training and validation arrays every stage uses.

    ``show(ecg_id)`` is a training record through the display pipeline (mV), what
    the gallery stores; ``facts`` are the data's provenance facts.
    """

    train_ids: np.ndarray
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    labels: list[str]
    pipeline: Pipeline
    show: Callable[[int], np.ndarray]
    facts: dict[str, Any]


def load_training_data(recipe: ProtoTrainConfig, data_root: str | os.PathLike, label_set: str,
                       folds_train: Sequence[int], fold_val: int, cache_dir: str | os.PathLike | None,
                       progress: bool, pipeline: Pipeline | None = None) -> TrainingData:
    """PTB-XL's training and validation folds through the recipe's pipeline, its fitted step applied
    (``pipeline``: a fitted one instead, e.g. a trunk's baseline's, cut to 10 s)."""
    fitted = pipeline is not None
    pipeline = Pipeline((*pipeline.steps, FixLength(10.0))) if fitted else recipe.pipeline(100.0)
    ds, train_split, val_split = load_train_val(data_root, label_set, folds_train, fold_val, pipeline,
                                                cache_dir=cache_dir, progress=progress)
    train_ids, train_x, train_y = train_split.arrays(recipe.max_records)
    _, val_x, val_y = val_split.arrays(recipe.max_records)
    pipeline, finish = (pipeline, lambda x: x) if fitted else recipe.fit_pipeline(pipeline, train_x)
    display = recipe.display_pipeline(100.0)

    def show(ecg_id: int) -> np.ndarray:
        ecg = ds.read(ecg_id)
        return display.apply_signal(ecg.signal, ecg.sampling_rate)[0]

    facts = {"data": ds.identity(), "folds": [int(f) for f in folds_train], "fold_val": int(fold_val),
             "n_train": len(train_ids), "n_val": len(val_y),
             "skipped": skipped_facts(train_split.skipped + val_split.skipped)}
    return TrainingData(train_ids, finish(train_x), train_y, finish(val_x), val_y, list(train_split.label_names),
                        pipeline, show, facts)
