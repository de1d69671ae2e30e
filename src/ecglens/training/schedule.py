"""Optimiser and learning-rate schedule factories (named, so configs stay plain data)."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")


def make_optimizer(param_groups: Iterable[dict[str, Any]], name: str, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.9) -> torch.optim.Optimizer:
    """An optimiser over ``param_groups`` (each may set its own ``lr``/``weight_decay``)."""
    groups = [dict(g) for g in param_groups]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, betas=betas)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def _warmup_cosine(warmup: int, total: int, floor: float):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int, pct_start: float = 0.3,
                   div_factor: float = 25.0, final_div_factor: float = 1e4) -> LRScheduler:
    """A per-step schedule peaking at each group's ``lr``.

    ``onecycle``: torch's OneCycleLR (warm-up over ``pct_start`` of the steps from
    lr/div_factor, cosine annealing to lr/(div_factor*final_div_factor), with
    inverse momentum cycling); ``cosine``: linear warm-up then cosine decay to
    lr/final_div_factor; ``constant``: the group lr throughout.
    """
    total_steps = max(1, int(total_steps))
    if name == "onecycle":
        peaks = [g["lr"] for g in optimizer.param_groups]
        return OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start,
                          div_factor=div_factor, final_div_factor=final_div_factor)
    if name == "cosine":
        warmup = max(1, int(round(pct_start * total_steps)))
        return LambdaLR(optimizer, _warmup_cosine(warmup, total_steps, 1.0 / final_div_factor))
    if name == "constant":
        return LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
