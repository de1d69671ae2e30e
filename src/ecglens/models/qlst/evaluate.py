"""qLST metrics: success, proximity, realism and speed, for qLST and the optimisation baseline.

* success rate: share of queries whose achieved score lies within
  ``tolerance`` (0.1) of the target q;
* proximity: RMSE between the decoded original and the explained beat, and
  between the record's real beat and the explained beat, in uV;
* realism against real beats (not decoded ones, which would favour decoded
  beats by construction): ``realism_to_real`` compares explained beats with
  the real beats of the same fold by nearest neighbours, excluding the
  record's own beat: the median RMSE to the nearest real beat (against the
  same for real beats among themselves) and a leave-one-out 1-nearest-
  neighbour two-sample test (accuracy 0.5: indistinguishable from real beats,
  1.0: always told apart). Also the prior log-density log N(z + dz; 0, I) and
  the VAE's re-encoding consistency ``RMSE(decode(encode(x)), x)`` (uV);
* speed: milliseconds per explanation (wall time of the batch / queries).

Both methods are scored under the same line-search policy (``line_search_steps``
per policy: 0 is none; otherwise ``network.line_search`` scales each method's
own step, and its time is added to the method's).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .losses import beat_rmse, prior_nll
from .network import QLST, Explanation, line_search
from .optimize import optimize_latent

FIELDS = ("z", "dz", "original", "beats", "score_before", "score_after")


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


def _rmse_matrix_uv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise RMSE (uV) between the beats of ``a`` (n, ...) and ``b`` (m, ...) in mV."""
    x = torch.as_tensor(np.asarray(a, dtype=np.float32).reshape(len(a), -1))
    y = torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(len(b), -1))
    return (torch.cdist(x.double(), y.double()) / math.sqrt(x.shape[1]) * 1e3).numpy()


def nearest_real_uv(beats: np.ndarray, records: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per beat, the RMSE (uV) to the nearest real beat of another record (``records`` index ``real``)."""
    d = _rmse_matrix_uv(beats, real)
    d[np.arange(len(d)), np.asarray(records)] = np.inf
    return d.min(axis=1)


def nn_two_sample_accuracy(beats: np.ndarray, records: np.ndarray, real: np.ndarray) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy telling ``beats`` from ``real`` (0.5: indistinguishable).

    ``records[i]`` is the row of ``real`` that beat i was made from; neighbours from the same
    record (its real beat, or another beat made from it) are excluded, so closeness to the
    patient's own beat (proximity) does not count as realism. Use as many beats as real ones.
    """
    records = np.asarray(records)
    pool = np.concatenate([np.asarray(beats), np.asarray(real)])
    owner = np.concatenate([records, np.arange(len(real))])
    label = np.concatenate([np.ones(len(beats), bool), np.zeros(len(real), bool)])
    d = _rmse_matrix_uv(pool, pool)
    d[owner[:, None] == owner[None, :]] = np.inf
    return float(np.mean(label[d.argmin(axis=1)] == label))


def realism_to_real(beats: np.ndarray, records: np.ndarray, real: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Realism of explained ``beats`` (made from rows ``records`` of ``real``) against the real beats.

    ``nn_real_uv``: median RMSE to the nearest real beat of another record; ``nn_real_ratio``: that
    over the same median for the real beats among themselves; ``nn_accuracy``: the 1-NN two-sample
    accuracy on one beat per record (drawn with ``seed``) against all the real beats.
    """
    beats, records, real = np.asarray(beats), np.asarray(records), np.asarray(real)
    nn = nearest_real_uv(beats, records, real)
    reference = float(np.median(nearest_real_uv(real, np.arange(len(real)), real)))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(beats))
    _, first = np.unique(records[order], return_index=True)
    one = order[first]
    return {"nn_real_uv": float(np.median(nn)), "nn_real_ratio": float(np.median(nn) / reference),
            "real_nn_real_uv": reference, "nn_accuracy": nn_two_sample_accuracy(beats[one], records[one], real)}


def summarize(expl: Explanation, q: torch.Tensor, vae, seconds: float, tolerance: float, *,
              inputs: torch.Tensor | None = None, records: np.ndarray | None = None,
              real: np.ndarray | None = None) -> dict[str, Any]:
    """The metrics of one method's answers; ``inputs`` (the queries' real beats), ``records`` (their rows
    in ``real``) and ``real`` (the fold's real beats) add proximity to the input and realism to real beats."""
    prox = (beat_rmse(expl.original, expl.beats) * 1e3).cpu().numpy()
    achieved, target = expl.score_after.cpu().numpy(), q.cpu().numpy()
    out = {"success_rate": success_rate(achieved, target, tolerance),
           "mean_abs_error": float(np.mean(np.abs(achieved - target))),
           "proximity_uv": float(np.mean(prox)), "proximity_uv_median": float(np.median(prox)),
           "prior_log_density": float(np.mean(prior_log_density(expl.z))),
           "consistency_uv": float(np.mean(reconstruction_consistency(vae, expl.beats))),
           "ms_per_explanation": 1e3 * seconds / max(len(q), 1), "queries": len(q)}
    if inputs is not None:
        out["proximity_input_uv"] = float((beat_rmse(inputs, expl.beats) * 1e3).mean())
    if records is not None and real is not None:
        out.update(realism_to_real(expl.beats.cpu().numpy(), records, real))
    return out


def line_searched(qlst: QLST, expl: Explanation, statement: torch.Tensor, q: torch.Tensor, steps: int,
                  context: Any = None) -> Explanation:
    """``expl`` with each step scaled by ``network.line_search`` on qLST's classifier (any method's answers)."""
    if not steps:
        return expl
    pick = statement.view(-1, 1)
    z = expl.z - expl.dz

    def score(a: torch.Tensor) -> torch.Tensor:
        return qlst.scores(qlst.vae.decode(z + a[:, None] * expl.dz), context).gather(1, pick).squeeze(1)

    with torch.no_grad():
        dz = line_search(score, q, expl.score_before, steps, qlst.config.max_step_scale)[:, None] * expl.dz
        x1 = qlst.vae.decode(z + dz)
        s1 = qlst.scores(x1, context).gather(1, pick).squeeze(1)
    return Explanation(z + dz, dz, expl.original, x1, expl.score_before, s1)


def evaluate_queries(qlst: QLST, z: torch.Tensor, statement: torch.Tensor, q: torch.Tensor, *,
                     context: Any = None, inputs: torch.Tensor | None = None, records: np.ndarray | None = None,
                     real: np.ndarray | None = None, baseline_steps: int = 100, baseline_lr: float = 0.05,
                     line_search_steps: dict[str, int] | None = None, batch_size: int = 256,
                     methods: tuple[str, ...] = ("qlst", "optimize")) -> dict[str, Any]:
    """qLST vs per-record optimisation of qLST's own objective on the same queries, under each policy.

    ``line_search_steps``: policy name -> bisection steps (default ``{"none": 0, "bisection": 6}``),
    applied alike to every method. ``inputs``: the queries' real beats (the baseline's proximity
    reference when the config measures from the input; proximity to the input); ``records``/``real``:
    realism against real beats (``summarize``). Times include decoding and scoring. Returns
    ``{method: {policy: metrics}}`` plus ``speedup`` (per policy), ``tolerance`` and ``baseline``.
    """
    policies = dict(line_search_steps if line_search_steps is not None else {"none": 0, "bisection": 6})
    tol = qlst.config.tolerance

    def part(sl: slice):
        if context is None or not hasattr(context, "r_peaks") or len(context.r_peaks) == 1:
            return context
        return type(context)(context.r_peaks[sl], context.n_samples)

    def answer(name: str, sl: slice) -> Explanation:
        if name == "qlst":
            return qlst.explain(z[sl], statement[sl], q[sl], part(sl), calibration_steps=0)
        return optimize_latent(qlst.vae, qlst.classifier, z[sl], statement[sl], q[sl], qlst.config, qlst.columns,
                               steps=baseline_steps, lr=baseline_lr, context=part(sl),
                               beats=None if inputs is None else inputs[sl])

    # One untimed call of each so one-off costs (allocations, kernel selection) do not count.
    qlst.explain(z[:1], statement[:1], q[:1], part(slice(0, 1)), calibration_steps=1)
    optimize_latent(qlst.vae, qlst.classifier, z[:1], statement[:1], q[:1], qlst.config, qlst.columns, steps=1,
                    context=part(slice(0, 1)), beats=None if inputs is None else inputs[:1])
    results: dict[str, Any] = {}
    for name in methods:
        parts, t0 = [], time.perf_counter()
        for i in range(0, len(z), batch_size):
            parts.append(answer(name, slice(i, i + batch_size)))
        seconds = time.perf_counter() - t0
        results[name] = {}
        for policy, steps in policies.items():
            t1 = time.perf_counter()
            done = [line_searched(qlst, p, statement[i * batch_size:(i + 1) * batch_size],
                                  q[i * batch_size:(i + 1) * batch_size], steps,
                                  part(slice(i * batch_size, (i + 1) * batch_size))) for i, p in enumerate(parts)]
            extra = time.perf_counter() - t1
            expl = Explanation(*[torch.cat([getattr(p, f) for p in done]) for f in FIELDS])
            results[name][policy] = summarize(expl, q, qlst.vae, seconds + extra, tol, inputs=inputs,
                                              records=records, real=real)
            results[name][policy]["line_search_steps"] = int(steps)
    if "qlst" in results and "optimize" in results:
        results["speedup"] = {p: results["optimize"][p]["ms_per_explanation"]
                              / max(results["qlst"][p]["ms_per_explanation"], 1e-9) for p in policies}
    results["tolerance"] = tol
    results["baseline"] = {"steps": int(baseline_steps), "lr": float(baseline_lr), "optimizer": "adam"}
    return results
