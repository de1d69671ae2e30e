"""qLST explanations: how the record's beat would have to change for the classifier to say q.

For one record: its median beat (the VAE's beat settings) and latent mean; per
explained statement a sweep of target scores q (0 to 1, or from the current
score to ``--target``) answered by the traversal network in one pass, decoded
into a sequence of beats; the score the classifier actually gives each decoded
beat (so a query the network misses is visible, not hidden); and the ECG
segments (P, QRS, ST, T, located on the original beat with ``ecg_measure``)
ranked by how much they change over the sweep. Writes ``explanation.json`` and
one overlay figure per statement (beats coloured by q, the patient's own median
beat in black on top, the most-changed segments shaded).

Statements one median beat cannot carry (``statements.beyond_one_beat()``:
rhythm, ectopy, higher AV block) are refused, not explained by reshaping a
beat: each gets an entry in ``refused`` (``"refused": true`` and the reason), a
line in ``warnings``, and no figure.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ECGError
from ..io.leads import STANDARD_LEADS
from ..io.record import ECG
from . import Explanation, ExplainOptions, safe_name

DEFAULT_STEPS = 11
# Fallback segment bounds (s from R) when ecg_measure cannot find a fiducial.
DEFAULT_SEGMENTS = {"P": (-0.20, -0.05), "QRS": (-0.05, 0.06), "ST": (0.06, 0.18), "T": (0.18, 0.45)}
MARK_FRACTION = 0.5
OWN_BEAT_COLOR = "black"


def refusal(statement: str) -> str:
    """Why qLST does not explain ``statement`` (one of ``statements.beyond_one_beat()``)."""
    from ..statements import describe

    name = describe(statement)
    return (f"{statement}{f' ({name})' if name else ''} is defined by the rhythm or the sequence of beats, which one "
            "median beat cannot show; qLST does not reshape a beat to explain it (look at the record's rhythm)")


def sweep_figure(beats, own_beat, rate: float, values, label: str, title: str, r_index: int,
                 segments=None):
    """A figure drawer: the sweep's beats coloured by ``values`` and the patient's own beat in black on top."""
    def draw(path) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.colors import to_rgba
        from matplotlib.lines import Line2D

        from ..viz import plot_overlay
        from ..viz.paper import save_figure

        seq = np.concatenate([np.asarray(beats), np.asarray(own_beat)[None]])
        vals = np.concatenate([np.asarray(values, dtype=np.float64), np.asarray(values[:1], dtype=np.float64)])
        fig = plot_overlay(seq, rate, STANDARD_LEADS, vals, cmap="coolwarm", colorbar_label=label, title=title,
                           segments=segments, start_s=-r_index / rate)
        for ax in fig.axes:
            for coll in ax.collections:
                if str(coll.get_gid() or "").startswith("overlay:"):  # the last line is the patient's beat
                    colors = coll.get_colors().copy()
                    colors[-1] = to_rgba(OWN_BEAT_COLOR)
                    widths = np.full(len(seq), 0.9)
                    widths[-1] = 1.4
                    coll.set_colors(colors)
                    coll.set_linewidths(widths)
                    coll.set_linestyles(["solid"] * (len(seq) - 1) + [(0, (3, 1.5))])
        fig.legend(handles=[Line2D([], [], color=OWN_BEAT_COLOR, lw=1.4, ls=(0, (3, 1.5)),
                                   label="patient's own median beat")], loc="upper right", fontsize=7,
                   frameon=False)
        save_figure(fig, path)
        plt.close(fig)

    return draw


def add_arguments(group) -> None:
    group.add_argument("--target", type=float, dest="qlst_target", metavar="Q",
                       help="qlst: sweep from the current score to this target score (default: sweep 0 to 1)")
    group.add_argument("--steps", type=int, dest="qlst_steps", default=DEFAULT_STEPS, metavar="N",
                       help=f"qlst: target scores in the sweep (default {DEFAULT_STEPS})")


def beat_segments(beat: np.ndarray, sampling_rate: float, r_index: int,
                  rr: float | None = None) -> list[tuple[str, float, float]]:
    """P, QRS, ST and T windows (name, start_s, end_s relative to R) of a median beat.

    ``rr`` (s, the record's median RR) lets ``ecg_measure`` bound its P and T
    searches by the cycle (without it a T peak can be sought past the next P). From ``ecg_measure``: P = P onset to QRS onset, QRS = QRS onset to offset,
    ST = QRS offset (J) to halfway to the T peak, T = from there to T end;
    ``DEFAULT_SEGMENTS`` stand in for fiducials that cannot be found. Windows
    are clipped to the beat.
    """
    from ..beats import ecg_measure

    try:
        m = ecg_measure(beat, sampling_rate, r_index, rr=rr)
    except ECGError:
        m = {}

    def at(key, default):
        v = m.get(key)
        return default if v is None else v / 1e3

    p_on = at("p_onset_ms", DEFAULT_SEGMENTS["P"][0])
    q_on = at("qrs_onset_ms", DEFAULT_SEGMENTS["QRS"][0])
    q_off = at("qrs_offset_ms", DEFAULT_SEGMENTS["QRS"][1])
    t_peak = at("t_peak_ms", None)
    st_end = (q_off + t_peak) / 2 if t_peak is not None and t_peak > q_off else DEFAULT_SEGMENTS["ST"][1]
    t_end = at("t_end_ms", DEFAULT_SEGMENTS["T"][1])
    lo, hi = -r_index / sampling_rate, (beat.shape[-1] - 1 - r_index) / sampling_rate
    out = []
    for name, a, b in (("P", p_on, q_on), ("QRS", q_on, q_off), ("ST", q_off, st_end), ("T", st_end, t_end)):
        a, b = max(lo, a), min(hi, b)
        if b > a:
            out.append((name, float(a), float(b)))
    return out


def segment_changes(beats: np.ndarray, reference: np.ndarray, segments, sampling_rate: float,
                    r_index: int) -> list[dict[str, Any]]:
    """Per segment: the largest RMS change (uV, over leads and the window) of any beat from ``reference``,
    and the lead that changes most there; largest change first."""
    diff = (np.asarray(beats, dtype=np.float64) - np.asarray(reference, dtype=np.float64)[None]) * 1e3
    out = []
    for name, a, b in segments:
        i0 = int(np.clip(round(a * sampling_rate) + r_index, 0, diff.shape[-1] - 1))
        i1 = int(np.clip(round(b * sampling_rate) + r_index, i0 + 1, diff.shape[-1]))
        win = diff[:, :, i0:i1]
        rms = np.sqrt((win ** 2).mean(axis=(1, 2)))
        lead_rms = np.sqrt((win ** 2).mean(axis=2)).max(axis=0)
        out.append({"segment": name, "start_s": a, "end_s": b, "change_uv": float(rms.max()),
                    "lead": STANDARD_LEADS[int(np.argmax(lead_rms))] if len(lead_rms) == 12 else int(np.argmax(lead_rms))})
    return sorted(out, key=lambda d: -d["change_uv"])


def _record_beat(qlst, ecg: ECG):
    """The VAE's median beat of the record, its info, and the classifier context (R peaks) if it reads records."""
    import torch

    from ..models.factorecg.data import BeatSettings, ecg_factorbeat
    from ..models.qlst.adapters import RecordClassifierAdapter, RecordContext
    from ..preprocess import resample_signal

    settings = BeatSettings.from_dict(qlst.checkpoint["beat"])
    ecg = ecg.standard12()  # the VAE reads the 12 standard leads; an ECGError names any that cannot be had
    x = resample_signal(ecg.signal, ecg.sampling_rate, settings.beat_rate)
    beat, info = ecg_factorbeat(x, settings.beat_rate, settings, source=ecg.source or None)
    context = None
    adapter = qlst.classifier
    if isinstance(adapter, RecordClassifierAdapter):
        # ecg_factorbeat finds the peaks on the record resampled to extract_rate.
        peaks = np.round(np.asarray(info["r_peaks"]) * adapter.rate / settings.extract_rate).astype(np.int64)
        n = int(round(ecg.signal.shape[-1] * adapter.rate / ecg.sampling_rate))
        context = RecordContext(torch.from_numpy(peaks)[None], n)
    return beat, info, settings, context


def explain(qlst, model_dir, ecg: ECG, options: ExplainOptions | None = None) -> Explanation:
    """Explain a classifier's output for one record with a loaded qLST."""
    import torch

    options = options or ExplainOptions()
    target = options.extra.get("qlst_target")
    steps = int(options.extra.get("qlst_steps") or DEFAULT_STEPS)
    if steps < 2:
        raise ECGError(None, f"--steps must be at least 2, got {steps}")
    if target is not None and not 0 <= float(target) <= 1:
        raise ECGError(None, f"--target must be a score in [0, 1], got {target}")
    from ..statements import beyond_one_beat

    beyond = beyond_one_beat()
    unknown = [s for s in options.statements if s not in qlst.config.statements and s not in beyond]
    if unknown:
        raise ECGError(model_dir, f"qLST was trained for {list(qlst.config.statements)}, not {unknown}")
    chosen = list(options.statements) or list(qlst.config.statements)
    refused = [{"statement": s, "refused": True, "reason": refusal(s)} for s in chosen if s in beyond]
    chosen = [s for s in chosen if s not in beyond]

    beat, info, settings, context = _record_beat(qlst, ecg)
    rate, r_index = settings.beat_rate, settings.r_index
    x = torch.from_numpy(beat.astype(np.float32))[None]
    with torch.no_grad():
        mu = qlst.vae.encode(x)[0]
        beat_scores = qlst.scores(x, context)[0].numpy()
    record_scores = None
    if qlst.record_classifier is not None:
        with qlst.record_classifier.raw():  # the traversal works on the classifier's uncalibrated scores
            probs = qlst.record_classifier.predict_ecgs([ecg])[0]
        record_scores = {s: float(probs[qlst.record_classifier.labels.index(s)]) for s in qlst.config.statements}
    if not options.statements and options.limit is not None:  # at most ``limit``, the highest-scoring ones
        score = record_scores or {s: float(beat_scores[qlst.statement_index(s)]) for s in chosen}
        chosen = sorted(chosen, key=lambda s: -score[s])[:options.limit]
    rr = 60.0 / info["heart_rate"] if info.get("heart_rate") else None
    segments = beat_segments(beat, rate, r_index, rr)
    tol = qlst.config.tolerance

    statements, drawers = [], {}
    for s in chosen:
        j = qlst.statement_index(s)
        rows = torch.full((steps,), j, dtype=torch.long)
        zs = mu.expand(steps, -1)
        current = float(qlst.explain(mu, s, 0.5, context).score_before[0])
        start = 0.0 if target is None else current
        stop = 1.0 if target is None else float(target)
        q = torch.linspace(start, stop, steps)
        ex = qlst.explain(zs, rows, q, context)
        seq = ex.beats.numpy()
        reference = ex.original[0].numpy()
        achieved = ex.score_after.numpy()
        prox = np.sqrt(((seq - reference[None]) ** 2).mean(axis=(1, 2))) * 1e3
        changes = segment_changes(seq, reference, segments, rate, r_index)
        entry = {"statement": s, "refused": False,
                 "score_record": None if record_scores is None else record_scores[s],
                 "score_beat": float(beat_scores[j]), "score_decoded": current,
                 "sweep": [{"q": float(a), "achieved": float(b), "abs_error": float(abs(a - b)),
                            "proximity_uv": float(c), "latent_step_norm": float(d)}
                           for a, b, c, d in zip(q.numpy(), achieved, prox, ex.dz.norm(dim=1).numpy())],
                 "success_rate": float(np.mean(np.abs(achieved - q.numpy()) <= tol)),
                 "segments": changes}
        top = changes[0]["change_uv"] if changes else 0.0
        marked = [(c["segment"], c["start_s"], c["end_s"]) for c in changes
                  if top > 0 and c["change_uv"] >= MARK_FRACTION * top]
        entry["figure"] = f"qlst_{safe_name(s)}.png"
        entry["marked_segments"] = [m[0] for m in marked]
        drawers[entry["figure"]] = sweep_figure(
            seq, beat, rate, q.numpy(), f"target P({s})",
            f"{s}: beat decoded for target scores {start:.2f} to {stop:.2f} (achieved {achieved[0]:.2f} to "
            f"{achieved[-1]:.2f}); most changed: {', '.join(m[0] for m in marked) or 'none'}; black dashed: the "
            "patient's own beat", r_index, segments=marked)
        statements.append(entry)

    recon = qlst.vae.decode(mu).detach().numpy()[0]
    result = {
        "model": str(model_dir), "kind": "qlst", "record": ecg.source,
        "classifier": qlst.checkpoint.get("classifier"), "vae": qlst.checkpoint.get("vae"),
        "beat": {"sampling_rate": rate, "r_index": r_index, "beats_found": info["beats_found"],
                 "beats_kept": info["beats_kept"], "heart_rate": info["heart_rate"],
                 "reconstruction_rmse_uv": float(np.sqrt(((recon - beat) ** 2).mean()) * 1e3)},
        "scored_on": "re-synthesised record at the patient's R peaks" if context is not None else "median beat",
        "tolerance": tol, "segments": [{"segment": n, "start_s": a, "end_s": b} for n, a, b in segments],
        "statements": statements, "refused": refused,
        "warnings": [r["reason"] for r in refused],
    }
    return Explanation("qlst", str(ecg.source), result, drawers, format_text(result))


def format_text(result: dict) -> str:
    """A short human-readable summary of ``explain``'s result."""
    clf = result.get("classifier") or {}
    lines = [f"{result['record']}: qLST explanation of the {clf.get('kind')} classifier at {clf.get('path')} "
             f"(scored on the {result['scored_on']})"]
    for r in result.get("refused", []):
        lines.append(f"{r['statement']}: REFUSED, not drawn: {r['reason']}")
    for s in result["statements"]:
        first, last = s["sweep"][0], s["sweep"][-1]
        rec = "" if s["score_record"] is None else f"record P={s['score_record']:.2f}, "
        lines.append(f"{s['statement']}: {rec}beat P={s['score_beat']:.2f}; target {first['q']:.2f} -> {last['q']:.2f} "
                     f"achieved {first['achieved']:.2f} -> {last['achieved']:.2f} "
                     f"({100 * s['success_rate']:.0f}% within {result['tolerance']:g})")
        for c in s["segments"]:
            lines.append(f"   {c['segment']:<4} changes up to {c['change_uv']:.0f} uV (most in {c['lead']})")
    return "\n".join(lines)
