"""ProtoECGNet explanations: each statement's logit as a sum of prototype contributions.

For every explained statement: probability, logit, bias and the prototypes with the
largest contributions (fusion weight x normalised similarity), each with its similarity,
the window of the query it matched (start/end in s), and the real training ECG it was
projected onto (ecg_id, statements, window). The faithfulness check
``logit == bias + sum(all contributions)`` is reported over every statement. Figures: the
query on ECG paper with the matched windows shaded, and each shown prototype's source
record with its window shaded, drawn when the explanation is saved.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ECGError
from ..io.leads import STANDARD_LEADS
from ..io.record import ECG
from . import Explanation, ExplainOptions, choose_statements, statement_call, safe_name

FAITHFUL_TOL = 1e-4
COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def explain(clf, model_dir, ecg: ECG, options: ExplainOptions | None = None) -> Explanation:
    """Explain a loaded ProtoECGNet classifier's output for one record (the gallery is read from ``model_dir``)."""
    import torch

    from ..models.protoecgnet.projection import Gallery

    options = options or ExplainOptions()
    model, config, gallery = clf.model.net, clf.config, Gallery.load(model_dir)
    rate = model.config.sampling_rate
    x = torch.from_numpy(np.array(clf.preprocess(ecg), dtype=np.float32))
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
    chosen, note, calibrated = choose_statements(clf, probs, options, model_dir)

    statements, drawers = [], {}
    display = _display_ecg(ecg, config, rate)
    for s in chosen:
        j = labels.index(s)
        order = [int(p) for p in np.argsort(-values[j], kind="stable") if weight[j, p] != 0][:options.top]
        items = [_evidence(model, out, table, gallery, p, values[j, p], weight[j, p], scores[p], rate) for p in order]
        entry = {"statement": s, "probability": float(probs[j]), **statement_call(clf, calibrated, j),
                 "logit": float(logits[j]), "bias": float(bias[j]),
                 "sum_contributions": float(values[j].sum()), "shown_contributions": float(values[j, order].sum()),
                 "faithfulness_error": float(errors[j]), "top_prototypes": items}
        entry["figure"] = _query_figure(display, s, items, drawers)
        for item in items:
            if item["source"] is not None:
                item["source_figure"] = _source_figure(gallery, item, drawers)
        statements.append(entry)

    result = {
        "model": str(model_dir), "kind": "protoecgnet", "record": ecg.source, "label_set": config.get("label_set"),
        "head": config.get("head", "masked fusion"), "probabilities": dict(zip(labels, (float(p) for p in probs))),
        "calibrated_probabilities": dict(zip(labels, calibrated.tolist())),
        "thresholds": dict(zip(labels, clf.thresholds.tolist())), "note": note,
        "faithfulness": {"invariant": "logit = bias + sum over prototypes of weight x normalised similarity",
                         "max_error": max_error, "tolerance": FAITHFUL_TOL, "satisfied": max_error <= FAITHFUL_TOL},
        "statements": statements,
    }
    if max_error > FAITHFUL_TOL:
        raise ECGError(model_dir, f"faithfulness invariant broken: logit differs from its contributions by {max_error:g}")
    return Explanation("protoecgnet", str(ecg.source), result, drawers, format_text(result))


def _evidence(model, out, table, gallery, p: int, contribution: float, weight: float, score: float,
              rate: float) -> dict[str, Any]:
    import torch

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


def _paper_figure(ecg: ECG, title: str, shade: list):
    """A drawer of ``ecg`` on ECG paper with shaded windows."""
    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt

        from ..viz import plot_ecg

        plt.close(plot_ecg(ecg, path, title=title, shade=shade))

    return draw


def _query_figure(display: ECG, statement: str, items: list[dict], drawers: dict) -> str:
    shades = [(None, it["query_window"]["start_s"], it["query_window"]["end_s"],
               f"P{it['prototype']} {it['contribution']:+.2f}", COLORS[i % len(COLORS)])
              for i, it in enumerate(items) if it["query_window"]["end_s"] > it["query_window"]["start_s"]]
    name = f"query_{safe_name(statement)}.png"
    drawers[name] = _paper_figure(display, f"{statement}: windows matched by its top prototypes", shades)
    return name


def _source_figure(gallery, item: dict, drawers: dict) -> str:
    p = item["prototype"]
    name = f"prototype{p}_source.png"
    if name not in drawers:
        _, signal = gallery.source(p)
        src = item["source"]
        ecg = ECG(signal, gallery.sampling_rate, STANDARD_LEADS, units=gallery.units, source=f"PTB-XL {src['ecg_id']}")
        drawers[name] = _paper_figure(ecg, f"prototype {p} ({item['branch']}, {item['prototype_label']}): PTB-XL "
                                           f"record {src['ecg_id']} [{', '.join(src['labels'])}]",
                                      [(None, src["start_s"], src["end_s"], f"prototype {p}", "tab:red")])
    return name


def format_text(result: dict) -> str:
    """A short human-readable summary of ``explain``'s result."""
    from ..statements import describe

    lines = [f"{result['record']}: ProtoECGNet ({result['head']})"]
    if result.get("note"):
        lines.append(result["note"])
    for s in result["statements"]:
        lines.append(f"{s['statement']} ({describe(s['statement'])})  P={s['calibrated_probability']:.2f} "
                     f"({'called' if s['called'] else 'not called'} at {s['threshold']:.2f}"
                     f"{'' if s['assessable'] else ', not assessable'}; network {s['probability']:.2f})  logit {s['logit']:+.2f} = bias {s['bias']:+.2f} "
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
