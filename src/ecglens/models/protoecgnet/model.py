"""ProtoECGNet: three prototype branches (rhythm, morphology, global) and a fusion layer.

Each branch is backbone -> add-on (1x1 convs) -> prototype layer -> similarity
normalisation -> class-connected last layer over that branch's statements. The fusion
layer maps all branches' normalised prototype scores to every statement: masked (a
statement reads only its own branch's prototypes), dense, or related (case-based: its own
prototypes and its co-occurring statements', ``heads.RelatedFusion``). Every logit, of a branch or of
the fusion, is a sum of per-prototype contributions plus a bias (``contributions``).
The masked fusion starts identical to the branch last layers (same inputs, same
initialisation); it becomes a distinct readout when trained in its own stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ECGError
from .backbones import Backbone1d, Backbone2d, TimeGeometry, Trunk, TrunkTap, window_input_span
from .config import BranchConfig, ProtoECGNetConfig
from .prototypes import ClassConnectedLinear, PrototypeLayer, SimilarityNorm


@dataclass
class BranchOutput:
    """One branch on a batch: logits (B, k_b), raw and normalised similarities (B, P),
    best window start (B, P) in latent steps, similarity map (B, P, W') and the latent
    map (B, D, W) the prototypes are compared with (what projection needs)."""

    logits: torch.Tensor
    similarity: torch.Tensor
    normalized: torch.Tensor
    best_window: torch.Tensor
    similarity_map: torch.Tensor
    latent: torch.Tensor


@dataclass
class ProtoECGNetOutput:
    """Model output on a batch.

    logits: (B, k) fused classifier. branch_logits_full: (B, k) each statement's logit from
    its own branch's last layer. Dicts are keyed by branch name. The parameter views at the
    end (prototypes, class maps, last-layer weights) let ``losses.total_loss`` stay a
    function of this object and the targets.
    """

    logits: torch.Tensor
    branch_logits_full: torch.Tensor
    branch_logits: dict[str, torch.Tensor]
    similarities: dict[str, torch.Tensor]
    normalized: dict[str, torch.Tensor]
    best_window: dict[str, torch.Tensor]
    similarity_maps: dict[str, torch.Tensor]
    latents: dict[str, torch.Tensor]
    prototypes: dict[str, torch.Tensor]
    prototype_class: dict[str, torch.Tensor]
    class_index: dict[str, torch.Tensor]
    last_layer_weight: dict[str, torch.Tensor]
    class_identity: dict[str, torch.Tensor]
    fusion_weight: torch.Tensor
    fusion_class_identity: torch.Tensor


@dataclass
class Contributions:
    """Why one record got its logits: ``logits == values.sum(-1) + bias``.

    values: (k, P) weight x normalised similarity for each class and prototype.
    labels: the k statements; prototypes: the P prototypes as (branch, index in branch).
    A record longer than the model's input is scored by windows (``ProtoECGNet.record_windows``)
    and each statement by its deciding window, the one with its highest logit: row j of
    ``values`` and ``logits`` is that window's, which starts at input sample
    ``window_start[j]`` (all 0 for a record of the input's length) and is ``window_length``
    samples long; ``window_seconds()`` gives start and stop in seconds.
    """

    labels: list[str]
    prototypes: list[tuple[str, int]]
    values: torch.Tensor
    bias: torch.Tensor
    logits: torch.Tensor
    window_start: torch.Tensor
    window_length: int
    record_length: int
    sampling_rate: float

    def window_seconds(self) -> torch.Tensor:
        """(k, 2) start and stop (clipped to the record) in seconds of each statement's deciding window."""
        stop = (self.window_start + self.window_length).clamp_max(max(self.record_length, 1))
        return torch.stack([self.window_start, stop], dim=1).double() / self.sampling_rate


class ChannelStandardize(nn.Module):
    """Zero mean, unit variance over channels at every latent position (no affine).

    Makes latent vectors signed and centred, so cosine similarities spread over [-1, 1];
    all-positive (sigmoid) latents put every cosine near 1.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a layer norm over the channels moved last is (x - mean) / sqrt(biased var + eps), ~5x faster than
        # separate mean and variance reductions over dim 1; constant shapes and dims keep it exportable to ONNX
        last = x.dim() - 1
        return F.layer_norm(x.movedim(1, last), (self.channels,), eps=self.eps).movedim(last, 1)


def _addon(cin: int, cout: int, activation: str, two_d: bool) -> nn.Sequential:
    conv = nn.Conv2d if two_d else nn.Conv1d
    last = nn.Sigmoid() if activation == "sigmoid" else ChannelStandardize(cout)
    return nn.Sequential(conv(cin, cout, 1), nn.ReLU(), conv(cout, cout, 1), last)


class PrototypeBranch(nn.Module):
    """Backbone -> add-on -> prototypes -> normalisation -> last layer for one branch.

    The branch reads the model's input, or with a "trunk" branch the shared ``trunk``'s map
    (``ProtoECGNet.encode``); ``trunk`` is given only to size the branch, not kept.
    """

    def __init__(self, cfg: BranchConfig, n_classes: int, n_leads: int, n_samples: int, sampling_rate: float,
                 activation: str = "layernorm", off_class: float = -0.5, momentum: float = 0.1,
                 trunk: Trunk | None = None):
        super().__init__()
        self.mode = cfg.prototype_mode
        self.n_samples = n_samples
        two_d = cfg.kind == "2d"
        if cfg.kind == "trunk":
            if trunk is None:
                raise ECGError("<ProtoECGNetConfig>", "a 'trunk' branch needs the model's trunk")
            stage = cfg.trunk_stage or trunk.stages[-1]
            self.backbone = TrunkTap(stage, *trunk.tap(stage))
        elif two_d:
            self.backbone = Backbone2d(cfg.widths, cfg.time_strides, cfg.lead_strides, cfg.kernel,
                                       cfg.stem_kernel, cfg.stem_stride)
        else:
            self.backbone = Backbone1d(n_leads, cfg.widths, cfg.time_strides, cfg.kernel,
                                       cfg.stem_kernel, cfg.stem_stride)
        self.addon = _addon(self.backbone.out_channels, cfg.prototype_channels, activation, two_d)
        channels, width = self._latent_shape(n_leads, n_samples, trunk if cfg.kind == "trunk" else None)
        self.latent_width = width
        if self.mode == "pooled":
            length = 1
        elif self.mode == "full":
            length = width
        else:
            length = max(1, round(cfg.prototype_seconds * sampling_rate / self.time_geometry.stride))
            if length > width:
                raise ECGError("<ProtoECGNetConfig>", f"{cfg.prototype_seconds} s prototypes need {length} latent "
                                                      f"steps but the latent map has only {width}")
        self.register_buffer("prototype_class",
                             torch.arange(n_classes).repeat_interleave(cfg.prototypes_per_class))
        self.prototype_layer = PrototypeLayer(n_classes * cfg.prototypes_per_class, channels, length,
                                              positive=activation == "sigmoid")
        self.norm = SimilarityNorm(self.n_prototypes, momentum)
        self.last_layer = ClassConnectedLinear(self.prototype_class, n_classes, off_class)

    @property
    def n_prototypes(self) -> int:
        return self.prototype_class.numel()

    @property
    def time_geometry(self) -> TimeGeometry:
        return self.backbone.time_geometry

    @torch.no_grad()
    def _latent_shape(self, n_leads: int, n_samples: int, trunk: Trunk | None) -> tuple[int, int]:
        modules = [self] if trunk is None else [self, trunk]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        x = torch.zeros(1, n_leads, n_samples)
        latent = self.latent(x if trunk is None else trunk(x))
        for m, mode in zip(modules, modes):
            m.train(mode)
        return latent.shape[1], latent.shape[2]

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The map prototypes are compared with: (B, D, W); 2D maps are flattened to
        (B, C*H, W); pooled branches average over time to W = 1. ``x`` is what the backbone
        reads: the input, or the trunk's map (``ProtoECGNet.encode``)."""
        z = self.addon(self.backbone(x))
        if z.ndim == 4:
            z = z.flatten(1, 2)
        if self.mode == "pooled":
            z = z.mean(dim=-1, keepdim=True)
        return z

    def forward(self, x: torch.Tensor) -> BranchOutput:
        latent = self.latent(x)
        similarity, best, sim_map = self.prototype_layer(latent)
        normalized = self.norm(similarity)
        return BranchOutput(self.last_layer(normalized), similarity, normalized, best, sim_map, latent)

    def span_table(self, mode: str = "footprint") -> torch.Tensor:
        """Input-sample span [start, end) of every window start, (W', 2) long.

        Pooled prototypes compare the whole record, so their one window spans all samples.
        """
        if self.mode == "pooled":
            rows = [(0, self.n_samples)]
        else:
            length = self.prototype_layer.length
            rows = [window_input_span(w, length, self.time_geometry, self.n_samples, mode)
                    for w in range(self.latent_width - length + 1)]
        return torch.tensor(rows, dtype=torch.long)

    def input_spans(self, best_window: torch.Tensor, mode: str = "footprint") -> torch.Tensor:
        """Input-sample spans of window starts (any shape) -> (..., 2) long."""
        return self.span_table(mode).to(best_window.device)[best_window]


class ProtoECGNet(nn.Module):
    """The three-branch prototype network of Sethi et al. (2025) on ``config.labels``."""

    def __init__(self, config: ProtoECGNetConfig):
        super().__init__()
        self.config = config
        index = config.branch_index
        self.branch_names = list(index)
        self.trunk = Trunk(config.trunk, config.trunk_stages()) if config.trunk is not None else None
        self.branches = nn.ModuleDict({
            name: PrototypeBranch(config.branches[name], len(idx), config.n_leads, config.n_samples,
                                  config.sampling_rate, config.addon_activation, config.off_class_weight,
                                  config.norm_momentum, self.trunk)
            for name, idx in index.items()})
        for name, idx in index.items():
            self.register_buffer(f"class_index_{name}", torch.tensor(idx, dtype=torch.long))
        order = torch.cat([torch.tensor(idx, dtype=torch.long) for idx in index.values()])
        self.register_buffer("_label_order", torch.argsort(order))
        # every prototype's statement, as a position into config.labels
        proto_label = torch.cat([self.class_index(n)[self.branches[n].prototype_class] for n in self.branch_names])
        if config.fusion == "related":
            from .heads import RelatedFusion, related_matrix

            self.fusion = RelatedFusion(proto_label, len(config.labels),
                                        related_matrix(len(config.labels), config.related_pairs()),
                                        config.off_class_weight)
        else:
            visible = self.branch_visible() if config.fusion == "masked" else None
            self.fusion = ClassConnectedLinear(proto_label, len(config.labels), config.off_class_weight, visible)

    def branch_visible(self) -> torch.Tensor:
        """(k, P) float: 1 where prototype p belongs to statement j's branch (the masked fusion's mask)."""
        proto_branch = torch.cat([torch.full((self.branches[n].n_prototypes,), i)
                                  for i, n in enumerate(self.branch_names)])
        label_branch = torch.empty(len(self.config.labels), dtype=torch.long)
        for i, n in enumerate(self.branch_names):
            label_branch[self.class_index(n)] = i
        return (label_branch[:, None] == proto_branch[None, :]).float()

    def class_index(self, branch: str) -> torch.Tensor:
        """Positions into ``config.labels`` of the statements ``branch`` classifies."""
        return getattr(self, f"class_index_{branch}")

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def _check_input(self, x: torch.Tensor) -> None:
        want = (self.config.n_leads, self.config.n_samples)
        if x.ndim != 3 or tuple(x.shape[1:]) != want:
            raise ECGError(None, f"ProtoECGNet expects input (batch, {want[0]}, {want[1]}), got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """What the branches' backbones read: the shared trunk's maps (``{stage: map}``), or without a trunk ``x``
        itself."""
        return x if self.trunk is None else self.trunk(x)

    def forward(self, x: torch.Tensor) -> ProtoECGNetOutput:
        self._check_input(x)
        h = self.encode(x)
        outs = {name: branch(h) for name, branch in self.branches.items()}
        normalized = torch.cat([outs[n].normalized for n in self.branch_names], dim=1)
        full = torch.cat([outs[n].logits for n in self.branch_names], dim=1)[:, self._label_order]
        branches = self.branches
        return ProtoECGNetOutput(
            logits=self.fusion(normalized),
            branch_logits_full=full,
            branch_logits={n: o.logits for n, o in outs.items()},
            similarities={n: o.similarity for n, o in outs.items()},
            normalized={n: o.normalized for n, o in outs.items()},
            best_window={n: o.best_window for n, o in outs.items()},
            similarity_maps={n: o.similarity_map for n, o in outs.items()},
            latents={n: o.latent for n, o in outs.items()},
            prototypes={n: branches[n].prototype_layer.prototypes for n in self.branch_names},
            prototype_class={n: branches[n].prototype_class for n in self.branch_names},
            class_index={n: self.class_index(n) for n in self.branch_names},
            last_layer_weight={n: branches[n].last_layer.effective_weight for n in self.branch_names},
            class_identity={n: branches[n].last_layer.class_identity for n in self.branch_names},
            fusion_weight=self.fusion.effective_weight,
            fusion_class_identity=self.fusion.class_identity,
        )

    def prototype_table(self) -> list[dict]:
        """One row per prototype in fusion order: id, branch, index in branch, statement."""
        rows = []
        for name in self.branch_names:
            labels = [self.config.labels[i] for i in self.class_index(name).tolist()]
            for j, c in enumerate(self.branches[name].prototype_class.tolist()):
                rows.append({"id": len(rows), "branch": name, "index": j, "label": labels[c]})
        return rows

    @property
    def window_stride(self) -> int:
        """Samples between the starts of the windows a long record is scored by."""
        seconds = self.config.window_stride_s
        if seconds is None:
            return max(1, self.config.n_samples // 2)
        return max(1, int(round(seconds * self.config.sampling_rate)))

    def record_windows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One preprocessed record (12, t) -> its windows (w, 12, n_samples) and their start samples (w,):
        those the classifier scores it by (``models.classifier.make_windows``; a short record is
        zero-padded at the end, one of exactly ``n_samples`` is its own single window)."""
        from ..classifier import make_windows, window_starts

        if x.ndim != 2 or x.shape[0] != self.config.n_leads:
            raise ECGError(None, f"expected one record shaped ({self.config.n_leads}, samples), got {tuple(x.shape)}")
        n = self.config.n_samples
        starts = window_starts(max(x.shape[-1], n), n, self.window_stride)
        return make_windows(x[None], n, self.window_stride)[0], torch.as_tensor(starts, dtype=torch.long)

    @torch.no_grad()
    def contributions(self, x: torch.Tensor, head: str = "fusion") -> Contributions:
        """Per-prototype contributions to one record's logits, in eval mode.

        ``head`` is "fusion" (all statements, all prototypes) or a branch name (that
        branch's statements and prototypes). ``x`` is one preprocessed record (12, t) of
        any length, or a batch of one (1, 12, t); a longer one is scored by its windows and
        each statement explained by its deciding window (``Contributions``). Row j holds
        ``logits[j] == values[j].sum() + bias[j]`` exactly for that window.
        """
        if x.ndim == 3:
            if x.shape[0] != 1:
                raise ECGError(None, f"contributions explains one record, got a batch of {x.shape[0]}")
            x = x[0]
        if head != "fusion" and head not in self.branches:
            raise ECGError(None, f"unknown head {head!r}; heads are ['fusion'] + {self.branch_names}")
        windows, starts = self.record_windows(x)
        was_training = self.training
        self.eval()
        try:
            out = self(windows)
        finally:
            self.train(was_training)
        if head == "fusion":
            layer, logits = self.fusion, out.logits
            scores = torch.cat([out.normalized[n] for n in self.branch_names], dim=1)
            labels = self.labels
            protos = [(r["branch"], r["index"]) for r in self.prototype_table()]
        else:
            branch = self.branches[head]
            layer, logits = branch.last_layer, out.branch_logits[head]
            scores = out.normalized[head]
            labels = [self.config.labels[i] for i in self.class_index(head).tolist()]
            protos = [(head, j) for j in range(branch.n_prototypes)]
        deciding = logits.argmax(dim=0)  # (k,): the window each statement's max-aggregated score comes from
        rows = torch.arange(logits.shape[1])
        values = layer.contributions(scores)[deciding, rows]
        return Contributions(labels, protos, values, layer.bias.detach().clone(), logits[deciding, rows],
                             starts[deciding], self.config.n_samples, int(x.shape[-1]), self.config.sampling_rate)

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> int:
        """Fit every branch's similarity normalisation on records (eval-mode features).

        Call after prototype projection: projection moves every similarity, and stale
        statistics would shift every logit. Returns the number of records used.
        """
        was_training = self.training
        self.eval()
        collected: dict[str, list[torch.Tensor]] = {n: [] for n in self.branch_names}
        try:
            for x in batches:
                self._check_input(x)
                h = self.encode(x)
                for name, branch in self.branches.items():
                    collected[name].append(branch.prototype_layer(branch.latent(h))[0])
        finally:
            self.train(was_training)
        n = 0
        for name, sims in collected.items():
            stacked = torch.cat(sims) if sims else torch.empty(0, self.branches[name].n_prototypes)
            if stacked.shape[0] < 2:
                raise ECGError(None, f"calibrate needs at least 2 records, got {stacked.shape[0]}")
            self.branches[name].norm.fit(stacked)
            n = stacked.shape[0]
        return n
