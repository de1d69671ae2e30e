"""ProtoECGNet configuration: label set, branch routing and every size.

Defaults are deliberately small (the paper: ImageNet ResNet-18 branches and ~5 / 18 / 7
prototypes per class for rhythm / morphology / global) so that the whole pipeline trains
on two CPU cores in minutes; every size is configurable. The default 71-label model has
192k parameters and 219 prototypes; forward and backward of the three branches on a batch
of 64 records (12 x 1000) measured 0.41 CPU-seconds single-threaded on the (shared,
loaded) development machine, against 3.1 s for the earlier stride-2-stem, wider defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ...configs import config_from_dict, config_to_dict
from ...errors import ECGError
from ..xresnet1d.config import XResNetConfig
from .branches import BRANCHES, branch_indices, load_branch_table

FUSIONS = ("masked", "dense", "related")
ACTIVATIONS = ("layernorm", "sigmoid")
PROTOTYPE_MODES = ("pooled", "full", "partial")
BACKBONE_KINDS = ("1d", "2d", "trunk")


@dataclass
class BranchConfig:
    """One branch: backbone sizes, add-on width and prototypes.

    kind: "1d" (leads as channels), "2d" (leads x time image) or "trunk" (reads the network's
        shared trunk, ``ProtoECGNetConfig.trunk``; the backbone sizes are then unused).
    trunk_stage: a "trunk" branch reads the map at the end of this residual stage (from 1; None:
        the last). An earlier stage keeps a match local: a latent step of the baseline's body sees
        2.0 s after stage 2, 4.25 s after stage 3 and 8.7 s after stage 4.
    widths / time_strides / lead_strides: one residual block per stage (lead_strides 2d only).
    prototype_mode: "pooled" (latent averaged over time, one vector per record),
        "full" (prototype spans the whole latent map), "partial" (``prototype_seconds``
        long, slides along time, scored by its best window).
    """

    kind: str
    widths: tuple[int, ...] = ()
    time_strides: tuple[int, ...] = ()
    lead_strides: tuple[int, ...] = ()
    kernel: int = 5
    stem_kernel: int = 7
    stem_stride: int = 2
    prototype_channels: int = 16
    prototypes_per_class: int = 3
    prototype_mode: str = "partial"
    prototype_seconds: float = 1.0
    trunk_stage: int | None = None

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        self.time_strides = tuple(int(s) for s in self.time_strides)
        self.lead_strides = tuple(int(s) for s in self.lead_strides)
        problems = []
        if self.kind not in BACKBONE_KINDS:
            problems.append(f"kind must be one of {BACKBONE_KINDS}, got {self.kind!r}")
        if self.kind != "trunk" and (not self.widths or len(self.time_strides) != len(self.widths)):
            problems.append("widths and time_strides need one entry per stage")
        if self.kind == "2d" and len(self.lead_strides) != len(self.widths):
            problems.append("a 2d branch needs one lead stride per stage")
        if self.kernel % 2 == 0 or self.stem_kernel % 2 == 0:
            problems.append("kernel sizes must be odd (centred padding keeps latent steps aligned)")
        if self.prototype_mode not in PROTOTYPE_MODES:
            problems.append(f"prototype_mode must be one of {PROTOTYPE_MODES}, got {self.prototype_mode!r}")
        if self.prototypes_per_class < 1 or self.prototype_channels < 1 or self.prototype_seconds <= 0:
            problems.append("prototypes_per_class, prototype_channels and prototype_seconds must be positive")
        if min(self.widths + self.time_strides + self.lead_strides, default=1) < 1:
            problems.append("widths and strides must be positive")
        if problems:
            raise ECGError("<ProtoECGNetConfig>", "; ".join(problems))


def default_branches() -> dict[str, BranchConfig]:
    """The small CPU defaults (time stride 16: a latent step is 160 ms at 100 Hz).

    Every branch has a stride-4 stem (kernel 9) and three residual stages with time strides
    1, 2, 2; a stride-2 stem made the morphology branch 8x dearer per step for little gain.
    rhythm: 1D, 24-48 channels, kernel 5, pooled prototypes (rhythm is not localised).
    morphology: 2D, 8-32 channels, lead rows 12 -> 6 -> 3, 1 s partial prototypes
        (6 latent steps = 0.96 s).
    global: 2D, 8-24 channels, whole-record prototypes.
    The paper's ~5 / 18 / 7 prototypes per class become 3 / 3 / 5: 2,800 training records
    hold only a handful of examples for most morphology statements.
    """
    return {
        "rhythm": BranchConfig(kind="1d", widths=(24, 32, 48), time_strides=(1, 2, 2), kernel=5, stem_kernel=9,
                               stem_stride=4, prototype_channels=32, prototypes_per_class=3,
                               prototype_mode="pooled"),
        "morphology": BranchConfig(kind="2d", widths=(8, 16, 32), time_strides=(1, 2, 2), lead_strides=(2, 2, 1),
                                   stem_kernel=9, stem_stride=4, prototype_channels=16, prototypes_per_class=3,
                                   prototype_mode="partial", prototype_seconds=1.0),
        "global": BranchConfig(kind="2d", widths=(8, 16, 24), time_strides=(1, 2, 2), lead_strides=(2, 2, 1),
                               stem_kernel=9, stem_stride=4, prototype_channels=16, prototypes_per_class=5,
                               prototype_mode="full"),
    }


def related_pairs(labels: tuple[str, ...], cooccurrence: dict[str, dict[str, float]],
                  related_threshold: float, related_groups: dict[str, str] | None = None) -> list[tuple[int, int]]:
    """``(statement, related statement)`` positions into ``labels``: the co-occurrence pairs
    (``ProtoECGNetConfig.cooccurrence``) whose Jaccard is above ``related_threshold``, then every other pair of
    statements in one of ``related_groups`` (``{statement: group}``); the keywords are ``heads.related_facts``'s."""
    index = {s: i for i, s in enumerate(labels)}
    pairs = [(index[a], index[b]) for a, row in cooccurrence.items() for b, jaccard in row.items()
             if jaccard > related_threshold]
    seen = set(pairs)
    members = [(index[s], g) for s, g in (related_groups or {}).items()]
    return pairs + [(i, j) for i, g in members for j, h in members if g == h and i != j and (i, j) not in seen]


@dataclass
class ProtoECGNetConfig:
    """Everything needed to rebuild a ProtoECGNet (serialised into checkpoints).

    labels: the model's outputs, in order (default: the 71 PTB-XL statements of the table).
    branch_map: ``{statement: branch}`` used instead of the bundled table (other label sets).
    addon_activation: how the add-on ends. "layernorm" (default): each latent vector is
        standardised over channels, so cosines spread over [-1, 1]. "sigmoid" (paper):
        positive latents, whose cosines all sit high and close together (measured at
        initialisation on random input: mean 0.86, spread across records ~0.001, against
        mean ~0 and spread ~0.015 with "layernorm"), which starves the cluster and
        separation losses of contrast.
    fusion: "masked" (a statement reads only its own branch's prototypes), "dense" (every
        prototype) or "related" (case-based, ``heads.RelatedFusion``: a statement reads only
        its own prototypes and those of the statements ``cooccurrence`` relates it to).
    cooccurrence: ``{statement: {related statement: Jaccard}}``, the training labels'
        co-occurrence (records with both / records with either) for every pair above
        ``related_threshold``; what "related" reads (None for the other fusions).
    related_groups: ``{statement: group}`` (e.g. PTB-XL's diagnostic class): the related fusion
        also relates every two statements of one group, whatever their co-occurrence, so a rare
        statement (posterior MI, 3 training records here) may cite the cases of its class's others.
    off_class_weight: the paper's -0.5, divided by the number of off-class prototypes.
    norm_momentum: running-statistics momentum of the similarity normalisation.
    window_stride_s: step between the ``n_samples``-long windows a longer record is scored by
        (None: half a window, 5 s for 10-s windows); each statement takes its highest-logit window.
    trunk: an xresnet1d body every "trunk" branch reads (``backbones.Trunk``; e.g. the baseline's
        network, to start from its trained weights): one forward pass for all branches, where the
        paper gives each branch its own backbone. None: each branch has its own small backbone.
    """

    labels: tuple[str, ...] = field(default_factory=lambda: tuple(load_branch_table()))
    branch_map: dict[str, str] | None = None
    n_leads: int = 12
    n_samples: int = 1000
    sampling_rate: float = 100.0
    branches: dict[str, BranchConfig] = field(default_factory=default_branches)
    addon_activation: str = "layernorm"
    fusion: str = "masked"
    off_class_weight: float = -0.5
    norm_momentum: float = 0.1
    cooccurrence: dict[str, dict[str, float]] | None = None
    related_threshold: float = 0.05
    related_groups: dict[str, str] | None = None
    window_stride_s: float | None = None
    trunk: XResNetConfig | None = None

    def __post_init__(self):
        self.labels = tuple(self.labels)
        src = "<ProtoECGNetConfig>"
        known = {f.name for f in fields(BranchConfig)}
        for name, b in self.branches.items():
            if not isinstance(b, BranchConfig) and set(b) - known:
                raise ECGError(src, f"unknown keys {sorted(set(b) - known)} in branch {name!r}")
        self.branches = {name: (b if isinstance(b, BranchConfig) else BranchConfig(**b))
                         for name, b in self.branches.items()}
        if self.fusion not in FUSIONS:
            raise ECGError(src, f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.window_stride_s is not None and not self.window_stride_s > 0:
            raise ECGError(src, f"window_stride_s must be positive, got {self.window_stride_s!r}")
        if self.fusion == "related" and self.cooccurrence is None:
            raise ECGError(src, "the related fusion needs the training co-occurrence (cooccurrence)")
        if self.cooccurrence is not None:
            pairs = [(a, b) for a, row in self.cooccurrence.items() for b in row]
            bad = sorted({s for pair in pairs for s in pair} - set(self.labels))
            if bad:
                raise ECGError(src, f"cooccurrence names statements that are not labels: {bad}")
            if any(a == b for a, b in pairs):
                raise ECGError(src, "cooccurrence relates a statement to itself")
        stray = sorted(set(self.related_groups or {}) - set(self.labels))
        if stray:
            raise ECGError(src, f"related_groups names statements that are not labels: {stray}")
        if self.addon_activation not in ACTIVATIONS:
            raise ECGError(src, f"addon_activation must be one of {ACTIVATIONS}, got {self.addon_activation!r}")
        unknown = set(self.branches) - set(BRANCHES)
        if unknown:
            raise ECGError(src, f"unknown branches {sorted(unknown)}; branches are {list(BRANCHES)}")
        missing = [b for b in self.branch_index if b not in self.branches]
        if missing:
            raise ECGError(src, f"labels route to branches {missing} that have no BranchConfig")
        readers = [n for n in self.branch_index if self.branches[n].kind == "trunk"]
        if readers and self.trunk is None:
            raise ECGError(src, f"branches {readers} read the trunk but the config has none (trunk)")
        if self.trunk is not None and not readers:
            raise ECGError(src, "the config has a trunk but no branch reads it (kind 'trunk')")
        stages = [s for s in self.trunk_stages() if not 1 <= s <= len(self.trunk.layers)] if self.trunk else []
        if stages:
            raise ECGError(src, f"trunk_stage {stages} outside the trunk's stages 1..{len(self.trunk.layers)}")
        if self.trunk is not None and self.trunk.in_channels != self.n_leads:
            raise ECGError(src, f"the trunk takes {self.trunk.in_channels} leads, the model {self.n_leads}")

    @property
    def branch_index(self) -> dict[str, list[int]]:
        """Per-branch positions into ``labels`` (empty branches absent)."""
        return branch_indices(self.labels, self.branch_map)

    def trunk_stages(self) -> tuple[int, ...]:
        """The trunk stages its branches read (sorted; the last stage for a branch that names none)."""
        last = len(self.trunk.layers) if self.trunk is not None else 0
        return tuple(sorted({b.trunk_stage or last for n, b in self.branches.items()
                             if b.kind == "trunk" and n in self.branch_index}))

    def related_pairs(self) -> list[tuple[int, int]]:
        """The related fusion's ``(statement, related statement)`` positions (``related_pairs``)."""
        return related_pairs(self.labels, self.cooccurrence or {}, self.related_threshold, self.related_groups)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProtoECGNetConfig":
        return config_from_dict(cls, d)
