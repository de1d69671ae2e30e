"""FactorECG explanations: the record's factors, each statement's logit split into factor contributions.

For one record: the median beat and its VAE reconstruction; every active
factor's standardised value and percentile in the training population, and the
record's rhythm features when the model uses them; per explained statement the
largest contributions (coefficient x value for logistic models, TreeSHAP
values for trees) of factors and rhythm features with their descriptions, and
the faithfulness check ``logit == base value + sum(contributions)`` (the base
value is the intercept, or the trees' expected logit); whether the statement
is one a median beat cannot carry (``statements.beyond_one_beat``) and so is
judged from the rhythm features or not assessable; for the others the decoded
beat moved along the most influential factor toward the NORM population; and
traversals (-3..+3 SD, widened to include the record's own value, which is
drawn in black) of the most influential factors, drawn when the explanation is saved.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..beats.rhythm import RHYTHM_DESCRIPTIONS
from ..errors import ECGError
from ..io.record import ECG
from ..statements import beyond_one_beat
from . import Explanation, ExplainOptions, choose_statements, statement_call, overlay_figure, safe_name

FAITHFUL_TOL = 1e-6
TRAVERSE_SD = np.linspace(-3.0, 3.0, 7)


def explain(clf, model_dir, ecg: ECG, options: ExplainOptions | None = None) -> Explanation:
    """Explain a loaded FactorECG classifier's output for one record."""
    from ..models.factorecg import toward_normal, traverse_factor
    from ..models.factorecg.traverse import traversal_values
    from ..models.factorecg.vae import decode_latents

    options = options or ExplainOptions()
    beat, info, rhythm = clf.beat_and_rhythm(ecg)
    mu, z = clf.factors(beat[None])
    mu, z = mu[0], z[0]
    fm, std = clf.factor_models, clf.standardizer
    x = clf.model_inputs(z, None if rhythm is None else rhythm[None])[0]
    extra = x[len(z):]
    probs = fm.predict_proba(x[None])[0]
    logits = fm.decision_function(x[None])[0]
    recon = decode_latents(clf.vae, mu[None])[0]
    rate, r_index = clf.settings.beat_rate, clf.settings.r_index
    pct = clf.percentiles(z)
    norm_mean = np.asarray(clf.population.get("norm_mean", np.zeros(len(z))), dtype=np.float64)

    factors = [{"factor": int(f), "value_std": float(v), "percentile": float(p), "norm_mean_std": float(n),
                "description": clf.describe(f)} for f, v, p, n in zip(std.indices, z, pct, norm_mean)]
    rhythm_features = [] if rhythm is None else [
        {"feature": n, "value": None if not np.isfinite(v) else float(v), "value_std": float(s),
         "description": RHYTHM_DESCRIPTIONS.get(n, n)} for n, v, s in zip(fm.features, rhythm, extra)]
    by_input = {d["factor"]: d for d in factors} | {d["feature"]: d for d in rhythm_features}

    chosen, note, calibrated = choose_statements(clf, probs, options, model_dir)

    drawers: dict[str, Any] = {}
    statements, influential = [], []
    max_error = 0.0
    for s in chosen:
        j = fm.statement_index(s)
        contrib = fm.contributions(x[None], s)
        base = fm.base_value(s)
        total = float(base + sum(c.contribution for c in contrib))
        error = abs(total - float(logits[j]))
        max_error = max(max_error, error)
        top = [_contribution(c, by_input[c.factor], clf) for c in contrib[:options.top]]
        influential += [c.factor for c in contrib[:options.top] if c.contribution != 0 and not isinstance(c.factor, str)]
        beyond = s in beyond_one_beat()
        entry = {"statement": s, "probability": float(probs[j]), **statement_call(clf, calibrated, j),
                 "logit": float(logits[j]), "intercept": base, "sum_contributions": total - base,
                 "faithfulness_error": error, "constant": s in fm.single_class, "beyond_one_beat": beyond,
                 "judged_from": ("not assessable: one median beat cannot carry it" if beyond and not clf.judges_rhythm
                                 else "rhythm features and beat factors" if beyond else "beat factors"
                                 + (" and rhythm features" if clf.judges_rhythm else "")),
                 "top_contributions": top}
        if s not in fm.single_class and not beyond:
            path = toward_normal(clf.vae, fm, std, mu, s, target_std=norm_mean, extra=extra)
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
        values, own = traversal_values(z[col], TRAVERSE_SD)
        beats = traverse_factor(clf.vae, mu, f, values, std=std.std[col], center=std.mean[col])
        name = f"traverse_factor{f}.png"
        traversals.append({"factor": f, "values_sd": values.tolist(), "patient_index": own,
                           "patient_value_sd": float(z[col]), "description": clf.describe(f), "figure": name})
        drawers[name] = traversal_figure(beats, rate, values, own, f"factor {f}: {values[0]:+.1f} to {values[-1]:+.1f} "
                                         f"SD, this record at {z[col]:+.2f} SD (black), other factors at its values",
                                         r_index)
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
        "faithfulness": {"invariant": "logit = intercept + sum(coefficient x input)" if fm.trees is None else
                         "logit = expected logit + sum(TreeSHAP value of each input)",
                         "max_error": max_error, "tolerance": FAITHFUL_TOL, "satisfied": max_error <= FAITHFUL_TOL},
        "factors": factors, "rhythm_features": rhythm_features, "statements": statements, "traversals": traversals,
        "figures": figures,
    }
    if max_error > FAITHFUL_TOL:
        raise ECGError(model_dir, f"faithfulness invariant broken: logit differs from its contributions by {max_error:g}")
    return Explanation("factorecg", str(ecg.source), result, drawers, format_text(result))


def _contribution(c, item: dict, clf) -> dict:
    """One entry of a statement's ``top_contributions``: a factor's or a rhythm feature's."""
    out = {"factor": c.factor, "coefficient": None if np.isnan(c.coefficient) else c.coefficient,
           "value_std": c.value, "contribution": c.contribution}
    if isinstance(c.factor, str):
        return {**out, "kind": "rhythm", "value": item["value"], "description": item["description"]}
    return {**out, "kind": "factor", "percentile": item["percentile"], "description": clf.describe(c.factor)}


def traversal_figure(beats, rate: float, values, patient: int, title: str, r_index: int):
    """A figure drawer: ``overlay_figure``'s traversal, the record's own value's beat drawn black and dashed on every
    lead (gid ``patient:<lead>``) and marked on the colour bar."""
    def draw(path) -> None:
        import matplotlib.pyplot as plt

        from ..viz import save_figure

        fig = traversal_plot(beats, rate, values, patient, title, r_index)
        save_figure(fig, path, dpi=150)
        plt.close(fig)

    return draw


def traversal_plot(beats, rate: float, values, patient: int, title: str, r_index: int):
    """The matplotlib figure of ``traversal_figure``."""
    from ..io.leads import STANDARD_LEADS
    from ..viz import plot_overlay

    label = "factor value (SD)"
    beats = np.asarray(beats)
    fig = plot_overlay(beats, rate, STANDARD_LEADS, values, colorbar_label=label, title=title, start_s=-r_index / rate)
    t = -r_index / rate + np.arange(beats.shape[-1]) / rate
    for ax in fig.axes:
        lead = next((c.get_gid().split(":", 1)[1] for c in ax.collections
                     if (c.get_gid() or "").startswith("overlay:")), None)
        if lead is not None:
            ax.plot(t, beats[patient, STANDARD_LEADS.index(lead)], color="black", linestyle="--", linewidth=1.1,
                    zorder=5, gid=f"patient:{lead}")
        elif ax.get_ylabel() == label:
            ax.axhline(values[patient], color="black", linewidth=2.0, gid="patient:colorbar")
    return fig


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
                     f"{s['intercept']:+.2f} + contributions {s['sum_contributions']:+.2f}")
        if s.get("beyond_one_beat"):
            lines.append(f"   beyond one median beat: judged from {s['judged_from']}")
        for c in s["top_contributions"]:
            if c.get("kind") == "rhythm":
                value = "n/a" if c["value"] is None else f"{c['value']:.3g}"
                lines.append(f"   {c['contribution']:+.2f}  rhythm {c['factor']} = {value} ({c['value_std']:+.2f} SD)  "
                             f"{c['description']}")
            else:
                lines.append(f"   {c['contribution']:+.2f}  factor {c['factor']} at {c['value_std']:+.2f} SD "
                             f"(P{c['percentile']:.0f})  {c['description']}")
    f = result["faithfulness"]
    lines.append(f"faithfulness: max |logit - contributions| = {f['max_error']:.2e} ({'ok' if f['satisfied'] else 'BROKEN'})")
    return "\n".join(lines)
