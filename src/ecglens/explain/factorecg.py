"""FactorECG explanations: the record's factors, each statement's logit split into factor contributions.

For one record: the median beat and its VAE reconstruction; every active
factor's standardised value and percentile in the training population; per
explained statement the largest contributions (coefficient x standardised
value) with each factor's data-driven description, and the faithfulness check
``logit == intercept + sum(contributions)``; the decoded beat moved along the
most influential factor toward the NORM population; and traversals (-3..+3 SD)
of the most influential factors, drawn when the explanation is saved.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ECGError
from ..io.record import ECG
from . import Explanation, ExplainOptions, choose_statements, statement_call, overlay_figure, safe_name

FAITHFUL_TOL = 1e-6
TRAVERSE_SD = np.linspace(-3.0, 3.0, 7)


def explain(clf, model_dir, ecg: ECG, options: ExplainOptions | None = None) -> Explanation:
    """Explain a loaded FactorECG classifier's output for one record."""
    from ..models.factorecg import toward_normal, traverse_factor
    from ..models.factorecg.vae import decode_latents

    options = options or ExplainOptions()
    beat, info = clf.beat(ecg)
    mu, z = clf.factors(beat[None])
    mu, z = mu[0], z[0]
    fm, std = clf.factor_models, clf.standardizer
    probs = fm.predict_proba(z[None])[0]
    logits = fm.decision_function(z[None])[0]
    recon = decode_latents(clf.vae, mu[None])[0]
    rate, r_index = clf.settings.beat_rate, clf.settings.r_index
    pct = clf.percentiles(z)
    norm_mean = np.asarray(clf.population.get("norm_mean", np.zeros(len(z))), dtype=np.float64)

    factors = [{"factor": int(f), "value_std": float(v), "percentile": float(p), "norm_mean_std": float(n),
                "description": clf.describe(f)} for f, v, p, n in zip(std.indices, z, pct, norm_mean)]
    by_factor = {d["factor"]: d for d in factors}

    chosen, note, calibrated = choose_statements(clf, probs, options, model_dir)

    drawers: dict[str, Any] = {}
    statements, influential = [], []
    max_error = 0.0
    for s in chosen:
        j = fm.statement_index(s)
        contrib = fm.contributions(z[None], s)
        total = float(fm.intercept[j] + sum(c.contribution for c in contrib))
        error = abs(total - float(logits[j]))
        max_error = max(max_error, error)
        top = [{"factor": c.factor, "coefficient": c.coefficient, "value_std": c.value, "contribution": c.contribution,
                "percentile": by_factor[c.factor]["percentile"], "description": clf.describe(c.factor)}
               for c in contrib[:options.top]]
        influential += [c.factor for c in contrib[:options.top] if c.contribution != 0]
        entry = {"statement": s, "probability": float(probs[j]), **statement_call(clf, calibrated, j),
                 "logit": float(logits[j]),
                 "intercept": float(fm.intercept[j]), "sum_contributions": total - float(fm.intercept[j]),
                 "faithfulness_error": error, "constant": s in fm.single_class, "top_contributions": top}
        if s not in fm.single_class and fm.coef[j].any():
            path = toward_normal(clf.vae, fm, std, mu, s, target_std=norm_mean)
            name = f"toward_normal_{safe_name(s)}.png"
            entry["toward_normal"] = {**path.to_dict(), "figure": name}
            drawers[name] = overlay_figure(path.beats, rate, path.probabilities, f"P({s})",
                                           f"{s}: factor {path.factor} moved toward the NORM mean "
                                           f"(P {path.probabilities[0]:.2f} -> {path.probabilities[-1]:.2f})", r_index)
        statements.append(entry)

    err_uv = (recon - beat).astype(np.float64) * 1e3
    figures: dict[str, Any] = {}
    traversed = list(dict.fromkeys(influential))[:options.top]
    traversals = []
    for f in traversed:
        col = std.indices.index(f)
        beats = traverse_factor(clf.vae, mu, f, TRAVERSE_SD, std=std.std[col], center=std.mean[col])
        name = f"traverse_factor{f}.png"
        traversals.append({"factor": f, "values_sd": TRAVERSE_SD.tolist(), "description": clf.describe(f),
                           "figure": name})
        drawers[name] = overlay_figure(beats, rate, TRAVERSE_SD, "factor value (SD)",
                                       f"factor {f}: -3 to +3 SD, other factors at this record's values", r_index)
    figures["beat_reconstruction"] = "beat_reconstruction.png"
    drawers["beat_reconstruction.png"] = overlay_figure(
        np.stack([beat, recon]), rate, [0.0, 1.0], "0 = median beat, 1 = VAE reconstruction",
        f"median beat and reconstruction (MAE {np.abs(err_uv).mean():.0f} uV)", r_index, cmap="coolwarm")

    result = {
        "model": str(model_dir), "kind": "factorecg", "record": ecg.source, "label_set": clf.config.get("label_set"),
        "beat": {"sampling_rate": rate, "r_index": r_index, "beats_found": info["beats_found"],
                 "beats_kept": info["beats_kept"], "heart_rate": info["heart_rate"]},
        "reconstruction": {"mae_uv": float(np.abs(err_uv).mean()), "rmse_uv": float(np.sqrt((err_uv ** 2).mean()))},
        "probabilities": dict(zip(clf.labels, (float(p) for p in probs))),
        "calibrated_probabilities": dict(zip(clf.labels, calibrated.tolist())),
        "thresholds": dict(zip(clf.labels, clf.thresholds.tolist())), "note": note,
        "active_factors": {"rule": clf.active.rule, "threshold": clf.active.threshold, "n_active": clf.active.n_active,
                           "latent_dim": clf.vae.config.latent_dim},
        "faithfulness": {"invariant": "logit = intercept + sum(coefficient x standardised factor)",
                         "max_error": max_error, "tolerance": FAITHFUL_TOL, "satisfied": max_error <= FAITHFUL_TOL},
        "factors": factors, "statements": statements, "traversals": traversals, "figures": figures,
    }
    if max_error > FAITHFUL_TOL:
        raise ECGError(model_dir, f"faithfulness invariant broken: logit differs from its contributions by {max_error:g}")
    return Explanation("factorecg", str(ecg.source), result, drawers, format_text(result))


def format_text(result: dict) -> str:
    """A short human-readable summary of ``explain``'s result."""
    from ..statements import describe

    lines = [f"{result['record']}: median beat reconstructed with MAE {result['reconstruction']['mae_uv']:.0f} uV"]
    if result.get("note"):
        lines.append(result["note"])
    for s in result["statements"]:
        lines.append(f"{s['statement']} ({describe(s['statement'])})  P={s['calibrated_probability']:.2f} "
                     f"({'called' if s['called'] else 'not called'} at {s['threshold']:.2f}"
                     f"{'' if s['assessable'] else ', not assessable'}; network {s['probability']:.2f})  logit {s['logit']:+.2f} = intercept "
                     f"{s['intercept']:+.2f} + factors {s['sum_contributions']:+.2f}")
        for c in s["top_contributions"]:
            lines.append(f"   {c['contribution']:+.2f}  factor {c['factor']} at {c['value_std']:+.2f} SD "
                         f"(P{c['percentile']:.0f})  {c['description']}")
    f = result["faithfulness"]
    lines.append(f"faithfulness: max |logit - contributions| = {f['max_error']:.2e} ({'ok' if f['satisfied'] else 'BROKEN'})")
    return "\n".join(lines)
