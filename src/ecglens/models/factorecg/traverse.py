"""Drawing and naming factors: latent traversals, the path toward normal, property associations."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from torch import nn

from ...errors import ECGError
from .factors import FactorModels, FactorStandardizer
from .vae import decode_latents


def traverse_factor(vae: nn.Module, z_mean: np.ndarray, factor_index: int,
                    values: np.ndarray = np.linspace(-3, 3, 7), std: float = 1.0,
                    center: float | None = None) -> np.ndarray:
    """Decoded beats (n_values, 12, samples) as one latent dimension moves.

    The dimension ``factor_index`` takes ``center + v * std`` for each v in
    ``values`` (standard deviations; ``std`` is the training population's std
    of mu for that factor, ``center`` its mean, by default ``z_mean``'s own
    value); every other dimension stays at ``z_mean`` (the population mean or
    a patient's latent vector).
    """
    z_mean = np.asarray(z_mean, dtype=np.float64).ravel()
    if not 0 <= int(factor_index) < len(z_mean):
        raise ECGError(None, f"factor index {factor_index} outside a latent of {len(z_mean)} dims")
    if not std > 0:
        raise ECGError(None, f"std must be positive, got {std}")
    values = np.asarray(values, dtype=np.float64).ravel()
    mid = z_mean[factor_index] if center is None else float(center)
    z = np.tile(z_mean, (len(values), 1))
    z[:, factor_index] = mid + values * std
    return decode_latents(vae, z)


def traversal_values(patient: float, values=(-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)) -> tuple[np.ndarray, int]:
    """Traversal positions (SD) that include the patient's own value, and its index among them.

    The drawn range ``values`` is widened to reach ``patient`` when it lies
    outside (keeping the number of evenly spaced steps), and ``patient`` is
    inserted in order unless it is already one of the steps.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    patient = float(patient)
    if len(v) < 2 or not np.all(np.isfinite(v)) or not np.isfinite(patient):
        raise ECGError(None, f"need at least two finite traversal values and a finite patient value, got {v}, {patient}")
    grid = np.linspace(min(v.min(), patient), max(v.max(), patient), len(v))
    close = np.flatnonzero(np.isclose(grid, patient, rtol=0, atol=1e-9))
    if len(close):
        grid[close[0]] = patient
        return grid, int(close[0])
    at = int(np.searchsorted(grid, patient))
    return np.insert(grid, at, patient), at


@dataclass
class NormalizationPath:
    """A patient's beat moved along one factor toward a reference (e.g. NORM) value.

    ``values_std``/``values_latent`` are the factor's positions (standardised /
    raw latent) at each step, ``beats`` the decoded (steps, 12, samples) beats
    in mV, ``logits``/``probabilities`` the statement's model output at each step.
    """

    statement: str
    factor: int
    values_std: np.ndarray
    values_latent: np.ndarray
    beats: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready summary (beats left out: save them as an array)."""
        return {"statement": self.statement, "factor": self.factor,
                "values_std": self.values_std.tolist(), "values_latent": self.values_latent.tolist(),
                "logits": self.logits.tolist(), "probabilities": self.probabilities.tolist()}


def toward_normal(vae: nn.Module, factor_models: FactorModels, standardizer: FactorStandardizer,
                  z: np.ndarray, statement: str, target_std: np.ndarray | None = None,
                  n_steps: int = 7, factor: int | None = None, extra: np.ndarray | None = None) -> NormalizationPath:
    """Move a patient's most influential factor for ``statement`` toward normal and decode.

    ``z`` is the patient's latent mean (latent_dim,). ``target_std`` is the
    reference position of every active factor in standardised units, e.g. the
    mean standardised factors of the NORM records; by default 0 (the population
    mean). The factor moved is the one whose move to the target lowers the
    logit most (for logistic models ``coef * (value - target)``; with the
    default target that is the factor with the largest positive contribution).
    ``factor`` (a latent index) overrides the choice. All other factors stay
    at the patient's values, and so do the model's other inputs ``extra``
    (the scaled rhythm features, when the factor models use them).
    """
    if n_steps < 2:
        raise ECGError(None, f"n_steps must be >= 2, got {n_steps}")
    z = np.asarray(z, dtype=np.float64).ravel()
    z_std = standardizer.transform(z[None])[0]
    target = np.zeros_like(z_std) if target_std is None else np.asarray(target_std, dtype=np.float64).ravel()
    if target.shape != z_std.shape:
        raise ECGError(None, f"target_std needs {len(z_std)} values, got {target.shape}")
    if list(factor_models.factor_indices) != list(standardizer.indices):
        raise ECGError(None, "factor models and standardiser were built on different factors")
    j = factor_models.statement_index(statement)
    rest = np.zeros(0) if extra is None else np.asarray(extra, dtype=np.float64).ravel()
    if len(z_std) + len(rest) != len(factor_models.inputs):
        raise ECGError(None, f"the factor models take {len(factor_models.inputs)} inputs; got {len(z_std)} factors "
                             f"and {len(rest)} other inputs")

    def inputs(factors: np.ndarray) -> np.ndarray:
        return np.hstack([factors, np.tile(rest, (len(factors), 1))])

    if factor is None:
        moved = np.tile(z_std, (len(z_std), 1))
        moved[np.arange(len(z_std)), np.arange(len(z_std))] = target
        logits = factor_models.decision_function(inputs(np.vstack([z_std[None], moved])))[:, j]
        col = int(np.argmax(logits[0] - logits[1:]))
    else:
        if factor not in standardizer.indices:
            raise ECGError(None, f"factor {factor} is not one of the active factors {standardizer.indices}")
        col = standardizer.indices.index(factor)
    steps = np.tile(z_std, (n_steps, 1))
    steps[:, col] = np.linspace(z_std[col], target[col], n_steps)
    latents = standardizer.to_latent(steps, base=z)
    logits = factor_models.decision_function(inputs(steps))[:, j]
    return NormalizationPath(statement=statement, factor=int(standardizer.indices[col]),
                             values_std=steps[:, col].copy(), values_latent=latents[:, standardizer.indices[col]].copy(),
                             beats=decode_latents(vae, latents), logits=logits,
                             probabilities=factor_models.predict_proba(inputs(steps))[:, j])


def associate_factors(factor_values: np.ndarray, properties: np.ndarray,
                      factor_names: list, property_names: list[str]) -> pd.DataFrame:
    """Spearman correlation of every factor with every measured ECG property.

    ``factor_values`` (n, f) and ``properties`` (n, m) share their records;
    NaN property values (failed measurements) are dropped pair by pair and the
    number of records used is reported. A pair with fewer than 3 records or a
    constant column gets rho = NaN. Returns a long table with columns
    factor, property, rho, p_value, n.
    """
    fv = np.asarray(factor_values, dtype=np.float64)
    pr = np.asarray(properties, dtype=np.float64)
    if fv.ndim != 2 or pr.ndim != 2 or len(fv) != len(pr):
        raise ECGError(None, f"factor values {fv.shape} and properties {pr.shape} must be 2-D with the same records")
    if len(factor_names) != fv.shape[1] or len(property_names) != pr.shape[1]:
        raise ECGError(None, f"{len(factor_names)} factor names for {fv.shape[1]} columns or "
                             f"{len(property_names)} property names for {pr.shape[1]} columns")
    rows = []
    for a, fname in enumerate(factor_names):
        for b, pname in enumerate(property_names):
            ok = np.isfinite(fv[:, a]) & np.isfinite(pr[:, b])
            x, y = fv[ok, a], pr[ok, b]
            rho = p = np.nan
            if ok.sum() >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                res = stats.spearmanr(x, y)
                rho, p = float(res.statistic), float(res.pvalue)
            rows.append({"factor": fname, "property": pname, "rho": rho, "p_value": p, "n": int(ok.sum())})
    return pd.DataFrame(rows, columns=["factor", "property", "rho", "p_value", "n"])


def describe_factor(table: pd.DataFrame, factor, top: int = 3, min_abs_rho: float = 0.2) -> str:
    """A short data-driven description of one factor from ``associate_factors`` output.

    E.g. ``"factor 7: ↑ QRS duration (ρ=0.62), ↓ R amplitude V5 (ρ=-0.41)"``:
    the ``top`` properties with |rho| >= ``min_abs_rho``, strongest first.
    """
    rows = table[table["factor"] == factor]
    if rows.empty:
        raise ECGError(None, f"factor {factor!r} is not in the association table")
    rows = rows[rows["rho"].abs() >= min_abs_rho].copy()
    label = f"factor {factor}"
    if rows.empty:
        return f"{label}: no property with |ρ| ≥ {min_abs_rho:g}"
    rows = rows.reindex(rows["rho"].abs().sort_values(ascending=False).index).head(top)
    parts = [f"{'↑' if r.rho > 0 else '↓'} {r.property} (ρ={r.rho:.2f})" for r in rows.itertuples()]
    return f"{label}: " + ", ".join(parts)
