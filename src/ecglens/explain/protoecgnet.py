"""ProtoECGNet explanations: each statement's logit as a sum of prototype contributions.

For every explained statement: probability, logit, bias and the prototypes with the
largest contributions (fusion weight x normalised similarity), each with its similarity,
the window of the query it matched (start/end in s), and the real training ECG it was
projected onto (ecg_id, statements, window). The faithfulness check
``logit == bias + sum(all contributions)`` is reported over every statement. Figures: the
query on ECG paper with the matched windows shaded, and each shown prototype's source
record with its window shaded. Writes ``explanation.json`` (and PNGs) to ``out_dir``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ECGError
from ..io.leads import STANDARD_LEADS
from ..io.record import ECG
from . import ExplainOptions, choose_statements

FAITHFUL_TOL = 1e-4
COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def load(model_dir):
    """``(model, config, gallery)`` of a ProtoECGNet checkpoint directory."""
    from ..models.protoecgnet.classifier import model_from_checkpoint
    from ..models.protoecgnet.projection import Gallery
    from ..training import load_checkpoint

    state, config = load_checkpoint(model_dir)
    if config.get("kind") != "protoecgnet":
        raise ECGError(model_dir, f"not a ProtoECGNet model (kind {config.get('kind')!r})")
    return model_from_checkpoint(state, config, model_dir), config, Gallery.load(model_dir)


def model_input(ecg: ECG, config: dict) -> np.ndarray:
    """The (12, T) model input of a record: the checkpoint's pipeline applied."""
    from ..preprocess import Pipeline

    if tuple(ecg.leads) != STANDARD_LEADS:
        raise ECGError(ecg.source or None, f"expected the 12 standard leads in order, got {list(ecg.leads)}")
    x, _ = Pipeline.from_dict(config["pipeline"]).apply_signal(ecg.signal, ecg.sampling_rate)
    if not np.isfinite(x).all():
        raise ECGError(ecg.source or None, "signal holds NaN or infinite values after preprocessing")
    return x


def explain(model_dir, ecg: ECG, out_dir, options: ExplainOptions | None = None) -> dict[str, Any]:
    """Explain a ProtoECGNet model's output for one record; returns the JSON it writes to ``out_dir``."""
    options = options or ExplainOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, config, gallery = load(model_dir)
    rate = model.config.sampling_rate
    x = torch.from_numpy(np.array(model_input(ecg, config), dtype=np.float32))
    contrib = model.contributions(x, head="fusion")
    with torch.no_grad():
        out = model(x[None])
    logits = contrib.logits.numpy().astype(np.float64)
    probs = 1.0 / (1.0 + np.exp(-logits))
    values = contrib.values.numpy().astype(np.float64)
    bias = contrib.bias.numpy().astype(np.float64)
    errors = np.abs(logits - (values.sum(axis=1) + bias))
    max_error = float(errors.max())
    weight = model.fusion.effective_weight.detach().numpy()
    scores = torch.cat([out.normalized[n] for n in model.branch_names], 1)[0].numpy()
    table = model.prototype_table()

    labels = model.labels
    chosen, note = choose_statements(labels, probs, options, model_dir)

    statements, figures = [], {}
    display = _display_ecg(ecg, config, rate)
    for s in chosen:
        j = labels.index(s)
        order = [int(p) for p in np.argsort(-values[j], kind="stable") if weight[j, p] != 0][:options.top]
        items = [_evidence(model, out, table, gallery, p, values[j, p], weight[j, p], scores[p], rate) for p in order]
        entry = {"statement": s, "probability": float(probs[j]), "logit": float(logits[j]), "bias": float(bias[j]),
                 "sum_contributions": float(values[j].sum()), "shown_contributions": float(values[j, order].sum()),
                 "faithfulness_error": float(errors[j]), "top_prototypes": items}
        if options.figures:
            entry["figure"] = _query_figure(display, s, items, out_dir)
            for item in items:
                if item["source"] is not None:
                    item["source_figure"] = _source_figure(gallery, item, out_dir, figures)
        statements.append(entry)

    result = {
        "model": str(model_dir), "kind": "protoecgnet", "record": ecg.source, "label_set": config.get("label_set"),
        "head": config.get("head", "masked fusion"), "probabilities": dict(zip(labels, (float(p) for p in probs))),
        "threshold": options.threshold, "note": note,
        "faithfulness": {"invariant": "logit = bias + sum over prototypes of weight x normalised similarity",
                         "max_error": max_error, "tolerance": FAITHFUL_TOL, "satisfied": max_error <= FAITHFUL_TOL},
        "statements": statements,
    }
    if max_error > FAITHFUL_TOL:
        raise ECGError(model_dir, f"faithfulness invariant broken: logit differs from its contributions by {max_error:g}")
    (out_dir / "explanation.json").write_text(json.dumps(result, indent=2))
    return result


def _evidence(model, out, table, gallery, p: int, contribution: float, weight: float, score: float,
              rate: float) -> dict[str, Any]:
    row = table[p]
    branch = model.branches[row["branch"]]
    window = int(out.best_window[row["branch"]][0, row["index"]])
    start, end = branch.input_spans(torch.tensor(window)).tolist()
    info = gallery.prototypes[p]
    if info["branch"] != row["branch"] or info["index"] != row["index"]:
        raise ECGError(None, f"gallery row {p} describes {info['branch']}/{info['index']}, "
                             f"the model {row['branch']}/{row['index']}")
    source = None
    if info.get("projected"):
        source = {"ecg_id": info["ecg_id"], "labels": info["source_labels"], "start_s": info["start"] / rate,
                  "end_s": info["end"] / rate, "similarity_at_projection": info["similarity"]}
    return {"prototype": p, "branch": row["branch"], "index": row["index"], "prototype_label": row["label"],
            "contribution": float(contribution), "weight": float(weight), "normalized_similarity": float(score),
            "similarity": float(out.similarities[row["branch"]][0, row["index"]]),
            "query_window": {"start_s": start / rate, "end_s": end / rate, "latent_start": window},
            "source": source}


def _display_ecg(ecg: ECG, config: dict, rate: float) -> ECG:
    from ..preprocess import Pipeline

    pipe = Pipeline.from_dict(config.get("display_pipeline") or config["pipeline"])
    signal, out_rate = pipe.apply_signal(ecg.signal, ecg.sampling_rate)
    units = ecg.units if "display_pipeline" in config else "a.u."
    return ECG(np.asarray(signal, dtype=np.float32), out_rate, STANDARD_LEADS, units=units, source=ecg.source)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _query_figure(display: ECG, statement: str, items: list[dict], out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    from ..viz import plot_ecg

    shades = [(None, it["query_window"]["start_s"], it["query_window"]["end_s"],
               f"P{it['prototype']} {it['contribution']:+.2f}", COLORS[i % len(COLORS)])
              for i, it in enumerate(items) if it["query_window"]["end_s"] > it["query_window"]["start_s"]]
    name = f"query_{_safe(statement)}.png"
    fig = plot_ecg(display, out_dir / name, title=f"{statement}: windows matched by its top prototypes", shade=shades)
    plt.close(fig)
    return name


def _source_figure(gallery, item: dict, out_dir: Path, done: dict) -> str:
    import matplotlib.pyplot as plt

    from ..viz import plot_ecg

    p = item["prototype"]
    if p in done:
        return done[p]
    _, signal = gallery.source(p)
    src = item["source"]
    ecg = ECG(signal, gallery.sampling_rate, STANDARD_LEADS, units=gallery.units, source=f"PTB-XL {src['ecg_id']}")
    name = f"prototype{p}_source.png"
    fig = plot_ecg(ecg, out_dir / name, shade=[(None, src["start_s"], src["end_s"], f"prototype {p}", "tab:red")],
                   title=f"prototype {p} ({item['branch']}, {item['prototype_label']}): PTB-XL record "
                         f"{src['ecg_id']} [{', '.join(src['labels'])}]")
    plt.close(fig)
    done[p] = name
    return name


def format_text(result: dict) -> str:
    """A short human-readable summary of ``explain``'s result."""
    lines = [f"{result['record']}: ProtoECGNet ({result['head']})"]
    if result.get("note"):
        lines.append(result["note"])
    for s in result["statements"]:
        lines.append(f"{s['statement']}  P={s['probability']:.2f}  logit {s['logit']:+.2f} = bias {s['bias']:+.2f} "
                     f"+ prototypes {s['sum_contributions']:+.2f} (shown {s['shown_contributions']:+.2f})")
        for it in s["top_prototypes"]:
            q = it["query_window"]
            src = it["source"]
            where = (f"like PTB-XL {src['ecg_id']} [{', '.join(src['labels'])}] {src['start_s']:.2f}-{src['end_s']:.2f} s"
                     if src else "unprojected prototype")
            lines.append(f"   {it['contribution']:+.2f}  prototype {it['prototype']} ({it['branch']}, "
                         f"{it['prototype_label']}) sim {it['similarity']:.2f} at {q['start_s']:.2f}-{q['end_s']:.2f} s, "
                         f"{where}")
    f = result["faithfulness"]
    lines.append(f"faithfulness: max |logit - bias - contributions| = {f['max_error']:.2e} "
                 f"({'ok' if f['satisfied'] else 'BROKEN'})")
    return "\n".join(lines)
