"""The comparison baseline: per-record gradient optimisation of the latent step.

For each query, ``dz`` starts at zero and Adam minimises the same objective
qLST is trained on (``losses.qlst_loss`` with the same ``QLSTConfig``, so the
same proximity term and reference) for ``steps`` iterations. A batch of
queries is optimised together; since the loss is a sum of per-query terms and
Adam is element-wise, that is exactly the same as optimising each query on its
own. Like qLST's, its step can then be scaled by ``network.line_search``
(``evaluate`` applies the same policy to both).
"""
from __future__ import annotations

from typing import Any

import torch

from .config import QLSTConfig
from .losses import proximity_reference, qlst_loss
from .network import Explanation


def optimize_latent(vae, classifier, z: torch.Tensor, statement: torch.Tensor, q: torch.Tensor, config: QLSTConfig,
                    columns: list[int] | None = None, *, steps: int = 100, lr: float = 0.05,
                    context: Any = None, beats: torch.Tensor | None = None) -> Explanation:
    """Answer queries by optimising ``dz`` per record (see the module docstring).

    ``statement`` indexes ``config.statements``; ``columns`` maps those to the
    classifier's outputs (default: looked up in ``classifier.labels``); ``beats``:
    the records' real beats, needed when ``config.proximity_reference == "input"``.
    """
    cols = torch.tensor(columns if columns is not None else
                        [list(classifier.labels).index(s) for s in config.statements], device=z.device)
    z = z.detach().float()
    pick = statement.view(-1, 1).to(z.device)
    q = q.to(z.device).float()

    def score(x):
        return classifier(x, context).index_select(1, cols).gather(1, pick).squeeze(1)

    with torch.no_grad():
        x0 = vae.decode(z)
        p0 = score(x0)
        p_x = score(beats) if beats is not None and config.proximity_reference == "input" else None
    x_ref, p_ref = proximity_reference(config, x0, p0, beats, p_x)
    dz = torch.zeros_like(z, requires_grad=True)
    opt = torch.optim.Adam([dz], lr=lr)
    for _ in range(int(steps)):
        x1 = vae.decode(z + dz)
        loss, _ = qlst_loss(score(x1), q, p_ref, x_ref, x1, z + dz, config)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        x1 = vae.decode(z + dz)
        p1 = score(x1)
    return Explanation(z + dz.detach(), dz.detach(), x0, x1, p0, p1)
