"""The qLST traversal network and the frozen parts it works with.

``TraversalNetwork`` is a small MLP: (latent mean z, the classifier's scores of
the decoded z for the configured statements, an embedding of the queried
statement, the target score q, and q - p) -> a latent step dz. One network
serves every configured statement. Its last layer starts at zero, so an
untrained network leaves the beat where it is.

``QLST`` bundles the network with the frozen VAE and classifier adapter:
``explain(z, statement, q)`` applies the network ``config.moves`` times, each
time to the latent reached so far and the classifier's score of its decoded
beat, then calibrates the length of the resulting step along its direction by
a short bisection on the classifier's score (``config.calibration_steps``; no
gradients, no per-record optimisation: a dozen forward passes in all).
``line_search`` is that calibration on its own, shared with the per-record
baseline so both can be compared with it or without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import ECGError
from .config import QLSTConfig


class TraversalNetwork(nn.Module):
    """(z, scores, statement index, q) -> dz (see the module docstring)."""

    def __init__(self, config: QLSTConfig):
        super().__init__()
        self.config = config
        k, d = len(config.statements), int(config.latent_dim)
        self.embedding = nn.Embedding(k, config.embed_dim)
        widths = [d + k + config.embed_dim + 2, *config.hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, scores: torch.Tensor, statement: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        p = scores.gather(1, statement.view(-1, 1)).squeeze(1)
        h = torch.cat([z, scores, self.embedding(statement), q.view(-1, 1), (q - p).view(-1, 1)], dim=1)
        return self.out(self.body(h))


@dataclass
class Explanation:
    """One batch of answered queries: the moved latents, beats and achieved scores."""

    z: torch.Tensor
    dz: torch.Tensor
    original: torch.Tensor
    beats: torch.Tensor
    score_before: torch.Tensor
    score_after: torch.Tensor


class QLST(nn.Module):
    """A traversal network with its frozen VAE and classifier adapter.

    ``classifier`` follows the ``DifferentiableClassifier`` protocol; the
    configured statements must be among its labels (``columns`` maps them).
    """

    def __init__(self, network: TraversalNetwork, vae: nn.Module, classifier, config: QLSTConfig | None = None):
        super().__init__()
        self.network = network
        self.config = config or network.config
        self.vae = vae.eval()
        for p in self.vae.parameters():
            p.requires_grad_(False)
        self.classifier = classifier
        missing = [s for s in self.config.statements if s not in classifier.labels]
        if missing:
            raise ECGError(None, f"statement(s) {missing} are not outputs of the classifier ({classifier.labels})")
        self.columns = [list(classifier.labels).index(s) for s in self.config.statements]

    def statement_index(self, statement: str) -> int:
        if statement not in self.config.statements:
            raise ECGError(None, f"qLST was trained for {list(self.config.statements)}, not {statement!r}")
        return self.config.statements.index(statement)

    def scores(self, beats: torch.Tensor, context: Any = None) -> torch.Tensor:
        """(B, k) classifier scores of the configured statements for mV beats."""
        cols = torch.tensor(self.columns, device=beats.device)
        return self.classifier(beats, context).index_select(1, cols)

    def traverse(self, z: torch.Tensor, statement: torch.Tensor, q: torch.Tensor, context: Any = None,
                 network: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoded original, its scores, and the latent after ``config.moves`` network steps.

        Each step reads the classifier's scores of the beat decoded from the latent reached
        so far (an observation: no gradient flows through it); gradients flow into the
        network (``network``: e.g. its DDP wrapper; default ``self.network``) through z.
        """
        net = network if network is not None else self.network
        with torch.no_grad():
            x0 = self.vae.decode(z)
            s0 = self.scores(x0, context)
        zt, st = z, s0
        for move in range(self.config.moves):
            if move:
                with torch.no_grad():
                    st = self.scores(self.vae.decode(zt), context)
            zt = zt + net(zt, st, statement, q)
        return x0, s0, zt

    def explain(self, z: torch.Tensor, statement: str | torch.Tensor, q: torch.Tensor | float,
                context: Any = None, calibration_steps: int | None = None) -> Explanation:
        """Answer queries "what would this beat look like with score q for the statement?" (no per-record
        optimisation); ``calibration_steps`` overrides the config's line search (0: none)."""
        z = torch.as_tensor(z, dtype=torch.float32).reshape(-1, self.config.latent_dim)
        b = len(z)
        if isinstance(statement, str):
            statement = torch.full((b,), self.statement_index(statement), dtype=torch.long)
        statement = statement.to(z.device)
        q = torch.as_tensor(q, dtype=torch.float32, device=z.device)
        q = q.expand(b) if q.ndim == 0 else q.reshape(b)
        was = self.network.training
        self.network.eval()
        try:
            with torch.no_grad():
                x0, s0, z1 = self.traverse(z, statement, q, context)
                dz = z1 - z
                pick = statement.view(-1, 1)
                steps = self.config.calibration_steps if calibration_steps is None else int(calibration_steps)
                if steps:
                    dz = self.calibrate_step(z, dz, pick, q, s0.gather(1, pick).squeeze(1), context,
                                             steps)[:, None] * dz
                x1 = self.vae.decode(z + dz)
                s1 = self.scores(x1, context)
        finally:
            self.network.train(was)
        return Explanation(z + dz, dz, x0, x1, s0.gather(1, pick).squeeze(1), s1.gather(1, pick).squeeze(1))

    @torch.no_grad()
    def calibrate_step(self, z: torch.Tensor, dz: torch.Tensor, pick: torch.Tensor, q: torch.Tensor,
                       p0: torch.Tensor, context: Any = None, steps: int | None = None) -> torch.Tensor:
        """Per-query scale of ``dz`` by ``line_search`` on this classifier (``steps``: default the config's)."""
        def score(a: torch.Tensor) -> torch.Tensor:
            return self.scores(self.vae.decode(z + a[:, None] * dz), context).gather(1, pick).squeeze(1)

        n = self.config.calibration_steps if steps is None else int(steps)
        return line_search(score, q, p0, n, self.config.max_step_scale)


@torch.no_grad()
def line_search(score, q: torch.Tensor, p0: torch.Tensor, steps: int, max_scale: float) -> torch.Tensor:
    """Scale ``a`` per query so that ``score(a)`` (the score at ``z + a * dz``) comes closest to ``q``.

    The step as given (a = 1) is kept unless a better landing is found: ``score(1)`` and
    ``score(max_scale)`` are evaluated; when the target lies between the scores at a = 0
    (``p0``) and a = 1 (overshoot) or between a = 1 and ``max_scale`` (undershoot), bisection
    narrows that bracket for ``steps`` steps, and the evaluated scale closest to ``q`` wins.
    It costs ``steps + 2`` classifier passes and no gradients; only the length of the step
    changes, never its direction. qLST and the per-record baseline share it (``evaluate``).
    """
    one = torch.ones_like(q)
    top = torch.full_like(q, float(max_scale))
    s1, s_top = score(one), score(top)
    below = p0 < q
    over = (s1 < q) != below  # the target lies between a = 0 and a = 1
    under = ~over & ((s_top < q) != below)  # ... between a = 1 and a = top
    bracketed = over | under
    lo, hi = torch.where(over, torch.zeros_like(q), one), torch.where(over, one, top)
    s_lo = torch.where(over, p0, s1)
    best, err = one, (s1 - q).abs()
    take = (s_top - q).abs() < err
    best, err = torch.where(take, top, best), torch.where(take, (s_top - q).abs(), err)
    for _ in range(int(steps)):
        mid = (lo + hi) / 2
        s_mid = score(mid)
        take = bracketed & ((s_mid - q).abs() < err)
        best, err = torch.where(take, mid, best), torch.where(take, (s_mid - q).abs(), err)
        same_side = (s_mid < q) == (s_lo < q)
        lo, s_lo = torch.where(same_side, mid, lo), torch.where(same_side, s_mid, s_lo)
        hi = torch.where(same_side, hi, mid)
    return best
