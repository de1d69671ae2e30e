"""qLST loss terms (pure functions of tensors; each returns one value per query, shape (B,)).

``qlst_loss`` combines them with the weights of a ``QLSTConfig``:

    w_target * target(p1, q)
  + w_proximity * proximity(q, p_ref, x_ref, x1)
  + w_prior * prior(z + dz)

with ``proximity`` ``exp(-|q - p_ref| / tau) * RMSE(x_ref, x1)`` (``"relaxed"``,
ours) or ``(1 - |q - p_ref|) * MSE(x_ref, x1)`` (``"paper"``); ``x_ref`` is the
decoded original or the real input beat and ``p_ref`` its score
(``proximity_reference``; the caller passes them). See ``config.py`` for why
each term has its form and default.
"""
from __future__ import annotations

import math

import torch

EPS = 1e-6


def bernoulli_kl(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(q) || Bernoulli(p)) = BCE(p, q) - H(q); 0 exactly when p == q."""
    p = p.clamp(EPS, 1 - EPS)
    q = q.clamp(0.0, 1.0)
    return (torch.special.xlogy(q, q) - q * torch.log(p)
            + torch.special.xlogy(1 - q, 1 - q) - (1 - q) * torch.log1p(-p))


def target_loss(p: torch.Tensor, q: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """How far the achieved score ``p`` is from the queried ``q``: ``"kl"`` or ``"mse"`` ((p - q)^2)."""
    if kind == "kl":
        return bernoulli_kl(q, p)
    if kind == "mse":
        return (p - q) ** 2
    raise ValueError(f"unknown target loss {kind!r}")


def proximity_weight(q: torch.Tensor, p0: torch.Tensor, tau: float) -> torch.Tensor:
    """exp(-|q - p0| / tau): full proximity pressure for small queries, relaxed for far ones (no gradient)."""
    return torch.exp(-(q - p0).abs() / float(tau)).detach()


def linear_proximity_weight(q: torch.Tensor, p0: torch.Tensor) -> torch.Tensor:
    """1 - |q - p0|: the paper's relaxation, linear in the distance of the query (no gradient)."""
    return (1.0 - (q - p0).abs()).detach()


def beat_mse(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Mean square difference per beat (B, leads, T) -> (B,), in the beats' unit squared (mV^2)."""
    return ((x1 - x0) ** 2).flatten(1).mean(dim=1)


def beat_rmse(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Root mean square difference per beat (B, leads, T) -> (B,), in the beats' unit (mV)."""
    return torch.sqrt(beat_mse(x0, x1) + 1e-12)


def proximity_loss(q: torch.Tensor, p_ref: torch.Tensor, x_ref: torch.Tensor, x1: torch.Tensor, kind: str,
                   tau: float) -> torch.Tensor:
    """The unweighted proximity term: ``"relaxed"`` or ``"paper"`` (module docstring)."""
    if kind == "relaxed":
        return proximity_weight(q, p_ref, tau) * beat_rmse(x_ref, x1)
    if kind == "paper":
        return linear_proximity_weight(q, p_ref) * beat_mse(x_ref, x1)
    raise ValueError(f"unknown proximity term {kind!r}")


def prior_nll(z: torch.Tensor) -> torch.Tensor:
    """-log N(z; 0, I) per row: 0.5 * ||z||^2 + 0.5 * d * log(2 pi)."""
    d = z.shape[-1]
    return 0.5 * (z ** 2).sum(dim=-1) + 0.5 * d * math.log(2 * math.pi)


def prior_radius_penalty(z: torch.Tensor, radius: float) -> torch.Tensor:
    """relu(||z|| - radius)^2 per row: no cost inside the prior's typical set, quadratic beyond it."""
    return torch.relu(torch.linalg.vector_norm(z, dim=-1) - float(radius)) ** 2


def prior_loss(z: torch.Tensor, kind: str, radius: float) -> torch.Tensor:
    """The configured prior term: ``"radius"`` penalty or ``"nll"`` divided by the latent size."""
    if kind == "radius":
        return prior_radius_penalty(z, radius)
    if kind == "nll":
        return prior_nll(z) / z.shape[-1]
    raise ValueError(f"unknown prior term {kind!r}")


def qlst_loss(p1: torch.Tensor, q: torch.Tensor, p_ref: torch.Tensor, x_ref: torch.Tensor, x1: torch.Tensor,
              z1: torch.Tensor, config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-query total loss (B,) and its mean terms (for logs) under a ``QLSTConfig``.

    ``x_ref``/``p_ref``: the proximity reference beat and its score (``config.proximity_reference``).
    """
    t = target_loss(p1, q, config.target_loss)
    prox = proximity_loss(q, p_ref, x_ref, x1, config.proximity, config.proximity_tau)
    prior = prior_loss(z1, config.prior, config.radius)
    total = config.w_target * t + config.w_proximity * prox + config.w_prior * prior
    logs = {"target": t.detach().mean(), "proximity_mv": beat_rmse(x_ref, x1).detach().mean(),
            "prior": prior.detach().mean(), "success": ((p1 - q).abs() <= config.tolerance).float().mean()}
    return total, logs


def proximity_reference(config, x0: torch.Tensor, p0: torch.Tensor, x: torch.Tensor | None,
                        p_x: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The proximity reference (beat, score): the decoded original ``(x0, p0)`` or the input ``(x, p_x)``."""
    if config.proximity_reference == "decoded":
        return x0, p0
    if x is None or p_x is None:
        raise ValueError("proximity_reference 'input' needs the records' real beats and their scores")
    return x, p_x
