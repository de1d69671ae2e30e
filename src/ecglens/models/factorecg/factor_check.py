"""Does each factor's description say what its traversal changes?

A factor's description (``traverse.describe_factor``) names the ECG
properties that correlate with it across training records (Spearman rho).
``check_descriptions`` traverses each active factor instead: the latent mean
of the training records (standardised factors at 0) with one factor moved
over ``levels`` standard deviations, decoded, and measured with the same
``beat_properties``. A described property agrees when its traversal moves it
in the direction of rho (Spearman correlation of level and measurement over
the traversal >= ``min_agreement``) and by at least ``min_change`` of its
spread over the training records; properties a single decoded beat does not
carry (heart rate, QTc: they need the RR interval) are not judged. A factor's
description passes when its first judged property agrees.
"""
from __future__ import annotations

import numpy as np

from ...errors import ECGError

RATE_PROPERTIES = ("heart rate", "QTc")


def traversal_measurements(vae, standardizer, factor: int, levels: np.ndarray, settings,
                           measure) -> np.ndarray:
    """(len(levels), p) measurements of the mean latent with ``factor`` at each standardised level."""
    from .vae import decode_latents

    z = np.zeros((len(levels), len(standardizer.indices)))
    z[:, standardizer.indices.index(factor)] = levels
    latent = standardizer.to_latent(z)
    beats = decode_latents(vae, latent)
    return measure(beats, np.full(len(beats), np.nan), settings.beat_rate, settings.r_index)[0]


def check_descriptions(vae, standardizer, associations: dict, settings, spread: dict[str, float], measure,
                       names: list[str], levels=np.linspace(-2.0, 2.0, 9), min_agreement: float = 0.8,
                       min_change: float = 0.1, min_abs_rho: float = 0.2, top: int = 3) -> dict[str, dict]:
    """Per active factor: the described properties (``associations``: factor -> rows with ``property`` and
    ``rho``, strongest first; the first ``top`` with |rho| >= ``min_abs_rho`` are described), each one's
    traversal change and verdict, and whether the description passes (module docstring)."""
    out = {}
    for key, rows in associations.items():
        factor = int(key)
        if factor not in standardizer.indices:
            raise ECGError(None, f"factor {factor} is not active")
        described = [r for r in rows if abs(r["rho"]) >= min_abs_rho][:top]
        values = traversal_measurements(vae, standardizer, factor, np.asarray(levels), settings, measure)
        checked = []
        for r in described:
            entry = {"property": r["property"], "rho": r["rho"]}
            if r["property"] in RATE_PROPERTIES:
                checked.append({**entry, "verdict": "not in one beat"})
                continue
            v = values[:, names.index(r["property"])]
            ok = np.isfinite(v)
            if ok.sum() < 3 or np.ptp(v[ok]) == 0:
                checked.append({**entry, "verdict": "not measurable", "change": None})
                continue
            from scipy.stats import spearmanr

            trend = float(spearmanr(np.asarray(levels)[ok], v[ok]).statistic)
            change = float(v[ok][-1] - v[ok][0])
            size = abs(change) / max(spread.get(r["property"], 0.0), 1e-12)
            agrees = np.sign(trend) == np.sign(r["rho"]) and abs(trend) >= min_agreement and size >= min_change
            checked.append({**entry, "traversal_trend": trend, "change": change, "change_in_spreads": size,
                            "verdict": "agrees" if agrees else "disagrees"})
        judged = [c for c in checked if c["verdict"] in ("agrees", "disagrees")]
        out[key] = {"checked": checked, "passes": bool(judged) and judged[0]["verdict"] == "agrees",
                    "judged": bool(judged)}
    return out
