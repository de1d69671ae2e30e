"""qLST metrics: success, proximity, realism and speed, for qLST and the optimisation baseline.

* success rate: share of queries whose achieved score lies within
  ``tolerance`` (0.1) of the target q;
* proximity: RMSE between the decoded original and the explained beat, in uV;
* realism: the prior log-density log N(z + dz; 0, I) of the explained latents,
  and the VAE's reconstruction consistency ``RMSE(decode(encode(x)), x)`` (uV)
  of the explained beats x, to set against the same quantity for real test
  beats (a beat the VAE re-encodes faithfully lies where it was trained);
* speed: milliseconds per explanation (wall time of the batch / queries).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .losses import beat_rmse, prior_nll
from .network import QLST, Explanation
from .optimize import optimize_latent


def success_rate(scores, targets, tolerance: float = 0.1) -> float:
    """Share of |score - target| <= tolerance."""
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    return float(np.mean(np.abs(s - t) <= tolerance)) if len(s) else math.nan


def prior_log_density(z: torch.Tensor) -> np.ndarray:
    """log N(z; 0, I) per row."""
    return (-prior_nll(torch.as_tensor(z, dtype=torch.float32))).cpu().numpy().astype(np.float64)


def reconstruction_consistency(vae, beats: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Per beat RMSE (uV) between ``decode(encode(x))`` (posterior mean) and ``x``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(beats), batch_size):
            x = beats[i:i + batch_size]
            out.append(beat_rmse(x, vae.decode(vae.encode(x)[0])) * 1e3)
    return torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros(0)


def _summary(expl: Explanation, q: torch.Tensor, vae, seconds: float, tolerance: float) -> dict[str, Any]:
    prox = (beat_rmse(expl.original, expl.beats) * 1e3).cpu().numpy()
    achieved = expl.score_after.cpu().numpy()
    return {"success_rate": success_rate(achieved, q.cpu().numpy(), tolerance),
            "mean_abs_error": float(np.mean(np.abs(achieved - q.cpu().numpy()))),
            "proximity_uv": float(np.mean(prox)), "proximity_uv_median": float(np.median(prox)),
            "prior_log_density": float(np.mean(prior_log_density(expl.z))),
            "consistency_uv": float(np.mean(reconstruction_consistency(vae, expl.beats))),
            "ms_per_explanation": 1e3 * seconds / max(len(q), 1), "queries": len(q)}


def evaluate_queries(qlst: QLST, z: torch.Tensor, statement: torch.Tensor, q: torch.Tensor, *,
                     context: Any = None, real_beats: torch.Tensor | None = None, baseline_steps: int = 100,
                     baseline_lr: float = 0.05, batch_size: int = 256) -> dict[str, Any]:
    """qLST vs per-record optimisation on the same queries; ``real_beats`` gives the realism reference.

    Queries run in batches of ``batch_size`` for both methods; times include
    decoding and scoring. Returns ``{"qlst": ..., "optimize": ..., "speedup": ...,
    "real_consistency_uv": ...}``.
    """
    tol = qlst.config.tolerance

    def part(sl: slice):
        if context is None or not hasattr(context, "r_peaks") or len(context.r_peaks) == 1:
            return context
        return type(context)(context.r_peaks[sl], context.n_samples)

    # One untimed call of each so one-off costs (allocations, kernel selection) do not count.
    qlst.explain(z[:1], statement[:1], q[:1], part(slice(0, 1)))
    optimize_latent(qlst.vae, qlst.classifier, z[:1], statement[:1], q[:1], qlst.config, qlst.columns, steps=1,
                    context=part(slice(0, 1)))
    results = {}
    for name in ("qlst", "optimize"):
        parts, t0 = [], time.perf_counter()
        for i in range(0, len(z), batch_size):
            sl = slice(i, i + batch_size)
            ctx = part(sl)
            if name == "qlst":
                parts.append(qlst.explain(z[sl], statement[sl], q[sl], ctx))
            else:
                parts.append(optimize_latent(qlst.vae, qlst.classifier, z[sl], statement[sl], q[sl], qlst.config,
                                             qlst.columns, steps=baseline_steps, lr=baseline_lr, context=ctx))
        seconds = time.perf_counter() - t0
        expl = Explanation(*[torch.cat([getattr(p, f) for p in parts]) for f in
                             ("z", "dz", "original", "beats", "score_before", "score_after")])
        results[name] = _summary(expl, q, qlst.vae, seconds, tol)
    results["speedup"] = results["optimize"]["ms_per_explanation"] / max(results["qlst"]["ms_per_explanation"], 1e-9)
    if real_beats is not None:
        results["real_consistency_uv"] = float(np.mean(reconstruction_consistency(qlst.vae, real_beats)))
    results["tolerance"] = tol
    results["baseline"] = {"steps": int(baseline_steps), "lr": float(baseline_lr), "optimizer": "adam"}
    return results
