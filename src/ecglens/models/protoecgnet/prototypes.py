"""Prototype layer, similarity normalisation and the class-connected last layer.

One prototype layer serves the 1D rhythm branch and the 2D morphology/global branches.
A 2D latent map (C, H=lead rows, W=time) is flattened to C*H channels over time, so a
prototype is a (C, H, L) patch: it covers every lead row and L latent time steps, and it
slides along time only. That keeps localisation a single number (the window start) whose
input span is known exactly (see ``backbones.window_input_span``); which leads matter is
part of the prototype itself. A 1D map (C, W) is the H=1 case. ``L`` equal to the latent
width gives a global (whole-record) prototype; a map pooled to W=1 with L=1 gives one
vector per record (the rhythm branch).

The last layer never sees raw cosine similarities: ``SimilarityNorm`` standardises each
prototype's similarity, and ``ClassConnectedLinear`` starts from weights that average
(own class +1/n_own, other classes ``off_class``/n_off), so a logit starts as O(1) however
many prototypes there are and however large every similarity becomes after projection.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ECGError

_EPS = 1e-8


def cosine_similarity_map(latent: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every prototype with every window of a latent map.

    latent: (B, D, W); prototypes: (P, D, L) with L <= W. Returns (B, P, W - L + 1):
    entry [b, p, w] is cos(prototypes[p], latent[b, :, w:w+L]) over the D*L values.
    """
    unit = prototypes / prototypes.flatten(1).norm(dim=1).clamp_min(_EPS)[:, None, None]
    dots = F.conv1d(latent, unit)
    # window norms: squares summed over channels first, then over the L steps by a (1, 1, L) ones kernel,
    # whose shape comes from the prototypes, so an ONNX export with a dynamic batch axis sees a constant one
    window_sq = F.conv1d(latent.square().sum(dim=1, keepdim=True), torch.ones_like(prototypes[:1, :1]))
    return dots / window_sq.clamp_min(_EPS).sqrt()


class PrototypeLayer(nn.Module):
    """``n_prototypes`` learnable (D, L) patches scored by their best-matching window.

    ``forward(latent)`` returns ``(similarity, best_window, similarity_map)``: the max over
    windows (B, P), its argmax window start (B, P) in latent steps, and the full map
    (B, P, W-L+1). The score used for classification is the similarity of the very window
    that ``best_window`` points at.
    """

    def __init__(self, n_prototypes: int, channels: int, length: int, positive: bool = True):
        super().__init__()
        if n_prototypes < 1 or channels < 1 or length < 1:
            raise ECGError(None, f"prototype layer needs positive sizes, got "
                                 f"{n_prototypes=}, {channels=}, {length=}")
        # Positive latents (sigmoid add-on) get positive prototypes, as in ProtoPNet;
        # standardised (signed) latents get signed ones.
        init = torch.rand if positive else torch.randn
        self.prototypes = nn.Parameter(init(n_prototypes, channels, length))

    @property
    def length(self) -> int:
        return self.prototypes.shape[-1]

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sim_map = cosine_similarity_map(latent, self.prototypes)
        similarity, best = sim_map.max(dim=-1)
        return similarity, best, sim_map


class SimilarityNorm(nn.Module):
    """Per-prototype standardisation ``(s - mean) / std`` of similarities.

    Training mode uses the batch's statistics (and tracks running ones, like a BatchNorm
    without affine); eval mode uses the running statistics. ``fit(similarities)`` sets the
    running statistics from a whole pass (call it after prototype projection, which moves
    every similarity). Running statistics start at mean 0, std 1, i.e. the identity.
    """

    def __init__(self, n_prototypes: int, momentum: float = 0.1, eps: float = 1e-6):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(n_prototypes))
        self.register_buffer("running_var", torch.ones(n_prototypes))

    def forward(self, similarity: torch.Tensor) -> torch.Tensor:
        if self.training and similarity.shape[0] > 1:
            mean = similarity.mean(dim=0)
            var = similarity.var(dim=0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (similarity - mean) / (var + self.eps).sqrt()

    @torch.no_grad()
    def fit(self, similarity: torch.Tensor) -> None:
        """Set the running statistics from similarities of many records, shaped (N, P)."""
        if similarity.ndim != 2 or similarity.shape[1] != self.running_mean.numel() or similarity.shape[0] < 2:
            raise ECGError(None, f"fit needs (N>=2, {self.running_mean.numel()}) similarities, "
                                 f"got {tuple(similarity.shape)}")
        similarity = similarity.to(self.running_mean)
        self.running_mean.copy_(similarity.mean(dim=0))
        self.running_var.copy_(similarity.var(dim=0, unbiased=False))


class ClassConnectedLinear(nn.Module):
    """Linear map from (normalised) prototype scores to class logits, plus a per-class bias.

    ``prototype_class[p]`` is the class prototype p was made for (its "own" class).
    ``visible`` (k, P) optionally masks which prototypes a class may read (the masked
    fusion); masked weights have no effect and receive no gradient. Initialisation keeps the paper's sign pattern
    (own +, other -) but divides by the counts: own-class weights ``1 / n_own`` and
    visible off-class weights ``off_class / n_off``, so at initialisation each logit is an
    average of own scores plus ``off_class`` times an average of other scores: bounded by
    (1 + |off_class|) * max|score| whatever the number of prototypes. ``class_identity``
    (P, k) is a one-hot buffer, used by the L1 loss on off-class weights.
    """

    def __init__(self, prototype_class: torch.Tensor, n_classes: int, off_class: float = -0.5,
                 visible: torch.Tensor | None = None):
        super().__init__()
        prototype_class = torch.as_tensor(prototype_class, dtype=torch.long)
        n_prototypes = prototype_class.numel()
        identity = F.one_hot(prototype_class, n_classes).float()  # (P, k)
        mask = torch.ones(n_classes, n_prototypes) if visible is None else torch.as_tensor(visible, dtype=torch.float32)
        if mask.shape != (n_classes, n_prototypes):
            raise ECGError(None, f"visible mask must be ({n_classes}, {n_prototypes}), got {tuple(mask.shape)}")
        self.register_buffer("class_identity", identity)
        self.register_buffer("mask", mask)
        self.weight = nn.Parameter(torch.zeros(n_classes, n_prototypes))
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.reset_weights(off_class)

    @torch.no_grad()
    def reset_weights(self, off_class: float = -0.5) -> None:
        """Own-class weights 1/n_own, visible off-class weights off_class/n_off, bias 0."""
        own = self.class_identity.T * self.mask  # (k, P)
        off = (1.0 - self.class_identity.T) * self.mask
        n_own = own.sum(dim=1, keepdim=True).clamp_min(1.0)
        n_off = off.sum(dim=1, keepdim=True).clamp_min(1.0)
        self.weight.copy_(own / n_own + off_class * off / n_off)
        self.bias.zero_()

    @property
    def effective_weight(self) -> torch.Tensor:
        """The weights actually used: ``weight * mask`` (k, P)."""
        return self.weight * self.mask

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return F.linear(scores, self.effective_weight, self.bias)

    def contributions(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-prototype contributions (B, k, P): ``logit = contributions.sum(-1) + bias``."""
        return scores[:, None, :] * self.effective_weight[None, :, :]
