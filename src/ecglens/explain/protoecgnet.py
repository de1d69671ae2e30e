"""ProtoECGNet explanations: each statement's logit as a sum of prototype contributions, in words and on paper.

For every explained statement: probability, logit, bias and the prototypes with the largest
contributions (fusion weight x normalised similarity). Each shown prototype comes with

- its similarity, and that similarity's percentile among the training records' best-window
  similarities for the same prototype (training folds 1-8; the per-prototype quantiles are
  stored in the checkpoint's gallery by ``bench/prototype_reference.py``; "not available" for
  a gallery without them or computed for other weights);
- the window of the query it matched, given as its **receptive field**: every input sample that
  can change the prototype's score at that window (wider than the prototype's footprint of
  ~1 s; a whole-record prototype's window is the whole record);
- the leads that carry the match, ranked by occlusion: each lead in turn is set to zero (its
  training mean after scaling) over the receptive field and the drop in the prototype's
  similarity at the matched window is measured;
- the real training ECG it was projected onto (ecg_id, statements, window) and a sentence.

The faithfulness check ``logit == bias + sum(all contributions)`` is reported over every
statement. Figures (drawn when the explanation is saved, for the called and asked-for
statements only unless ``all_figures``): one per statement, with where each match lies in the
record and each matched window zoomed beside its prototype's source snippet on the same
mV/s scale, only the leads that carry the match drawn.
"""
from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ECGError
from ..io.leads import STANDARD_LEADS
from ..io.record import ECG
from ..statements import describe
from . import (
    ExplainOptions,
    Explanation,
    Panel,
    called_statements,
    choose_statements,
    panel_figure,
    safe_name,
    statement_call,
)

FAITHFUL_TOL = 1e-4
COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
MARKED_LEADS = 3  # leads drawn per matched window (the ones whose occlusion lowers the similarity most)
REFERENCE_META = "similarity_reference"  # key in the gallery's JSON table
REFERENCE_ARRAY = "similarity_quantiles"  # (P, Q) array in the gallery's safetensors
OVERVIEW_LEAD = "II"
WINDOW_NOTE = ("windows are receptive fields: every input sample that can change the prototype's score at its "
               "best-matching window (not the prototype's ~1-s footprint)")
OCCLUSION_NOTE = ("lead ranking by occlusion: the lead set to zero (its training mean after scaling) over the "
                  "receptive field; similarity_drop is the fall in the prototype's cosine similarity at the matched "
                  "window")


_RESOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loaded network -> model_resources


def similarity_fingerprint(net) -> str:
    """SHA-256 of every weight and buffer a prototype similarity depends on (backbones, add-ons, prototypes;
    not the normalisation or any head), so a reference distribution is used only with the weights it was computed for."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        parts = name.split(".")
        if parts[0] == "branches" and len(parts) > 2 and parts[2] in ("backbone", "addon", "prototype_layer"):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_similarity_reference(model_dir, net) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The gallery's per-prototype similarity quantiles (P, Q) and a description, or ``(None, why not)``."""
    from safetensors import safe_open

    from ..models.protoecgnet.projection import GALLERY_TABLE, GALLERY_WEIGHTS

    table = Path(model_dir) / GALLERY_TABLE
    try:
        meta = json.loads(table.read_text()).get(REFERENCE_META)
    except (OSError, ValueError) as exc:
        raise ECGError(table, f"ProtoECGNet gallery unreadable ({exc})") from None
    if not meta:
        return None, {"available": False, "reason": "not available: this checkpoint's gallery holds no reference "
                                                    "distribution (bench/prototype_reference.py computes one)"}
    if meta.get("fingerprint") != similarity_fingerprint(net):
        return None, {"available": False, "reason": "not available: the gallery's reference distribution was "
                                                    "computed for other prototype or backbone weights"}
    with safe_open(str(Path(model_dir) / GALLERY_WEIGHTS), framework="numpy") as arrays:
        names = arrays.keys()
        quantiles = arrays.get_tensor(REFERENCE_ARRAY) if REFERENCE_ARRAY in names else None
    n_prototypes = sum(b.n_prototypes for b in net.branches.values())
    if quantiles is None or quantiles.ndim != 2 or quantiles.shape[0] != n_prototypes or quantiles.shape[1] < 2:
        raise ECGError(Path(model_dir) / GALLERY_WEIGHTS, f"{REFERENCE_ARRAY} must be ({n_prototypes}, Q >= 2), got "
                                                          f"{None if quantiles is None else quantiles.shape}")
    info = {k: v for k, v in meta.items() if k not in ("fingerprint", "levels_percent")}
    return np.asarray(quantiles, dtype=np.float64), {"available": True, "levels": quantiles.shape[1], **info}


def model_resources(net, model_dir) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """``(gallery, similarity quantiles, reference info)`` of a loaded network, read from ``model_dir`` once per
    network object (explaining many records reads the gallery once; the report draws from the same copy)."""
    from ..models.protoecgnet.projection import Gallery

    key = str(Path(model_dir).resolve())
    cached = _RESOURCES.get(net)
    if cached is None or cached[0] != key:
        cached = (key, Gallery.load(model_dir), *load_similarity_reference(model_dir, net))
        _RESOURCES[net] = cached
    return cached[1:]


def similarity_percentile(similarity, quantiles) -> np.ndarray:
    """Percentile (0-100) of ``similarity`` among a prototype's training similarities, given their quantiles
    at evenly spaced levels from 0 to 100 %; piecewise linear, non-decreasing in the similarity."""
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 100.0, len(q))
    xp, inverse = np.unique(q, return_inverse=True)
    fp = np.bincount(inverse, weights=levels) / np.bincount(inverse)  # tied quantiles share their mean level
    return np.interp(np.asarray(similarity, dtype=np.float64), xp, fp, left=0.0, right=100.0)


def lead_drops(net, x, branch: str, index: int, window: int, span: tuple[int, int]) -> np.ndarray:
    """(12,) fall in prototype ``branch/index``'s similarity at ``window`` when each lead is zeroed over ``span``."""
    import torch

    from ..models.protoecgnet.prototypes import cosine_similarity_map

    module = net.branches[branch]
    n = x.shape[0]
    batch = x[None].repeat(n + 1, 1, 1)
    for lead in range(n):
        batch[lead + 1, lead, span[0]:span[1]] = 0.0
    with torch.no_grad():
        prototype = module.prototype_layer.prototypes[index:index + 1]
        sims = cosine_similarity_map(module.latent(net.encode(batch)), prototype)[:, 0, window].numpy().astype(np.float64)
    return sims[0] - sims[1:]


def explain(clf, model_dir, ecg: ECG, options: ExplainOptions | None = None) -> Explanation:
    """Explain a loaded ProtoECGNet classifier's output for one record (the gallery is read from ``model_dir``)."""
    import torch

    options = options or ExplainOptions()
    net, config = clf.model.net, clf.config
    gallery, reference, reference_info = model_resources(net, model_dir)
    rate = net.config.sampling_rate
    x = torch.from_numpy(np.array(clf.preprocess(ecg), dtype=np.float32))
    contrib = net.contributions(x, head="fusion")
    windows = _record_windows(net, x)
    deciding = (contrib.window_start.tolist() if getattr(contrib, "window_start", None) is not None
                else [0] * len(contrib.labels))
    logits = contrib.logits.numpy().astype(np.float64)
    probs = 1.0 / (1.0 + np.exp(-logits))
    values = contrib.values.numpy().astype(np.float64)
    bias = contrib.bias.numpy().astype(np.float64)
    errors = np.abs(logits - (values.sum(axis=1) + bias))
    max_error = float(errors.max())
    if max_error > FAITHFUL_TOL:
        raise ECGError(model_dir, f"faithfulness invariant broken: logit differs from its contributions by {max_error:g}")
    weight = net.fusion.effective_weight.detach().numpy()
    table = net.prototype_table()

    labels = net.labels
    chosen, note, calibrated = choose_statements(clf, probs, options, model_dir)
    called = called_statements(clf, calibrated, options)
    contexts: dict[int, _Context] = {}

    statements, drawers = [], {}
    display = display_ecg(ecg, config, rate)
    for s in chosen:
        j = labels.index(s)
        order = [int(p) for p in np.argsort(-values[j], kind="stable") if weight[j, p] != 0][:options.top]
        total = float(np.abs(values[j]).sum())
        own = np.array([row["label"] == s for row in table])
        start = int(deciding[j])
        if start not in contexts:
            contexts[start] = _Context(net, windows[start], start, x.shape[-1], table, gallery, reference, rate)
        context = contexts[start]
        items = [context.evidence(p, s, values[j, p], weight[j, p], total) for p in order]
        entry = {"statement": s, "probability": float(probs[j]), **statement_call(clf, calibrated, j),
                 "logit": float(logits[j]), "bias": float(bias[j]), "window": context.window_info(),
                 "sum_contributions": float(values[j].sum()), "shown_contributions": float(values[j, order].sum()),
                 "shown_share_of_evidence": float(np.abs(values[j, order]).sum() / total) if total else None,
                 "own_share_of_evidence": float(np.abs(values[j, own]).sum() / total) if total else None,
                 "faithfulness_error": float(errors[j]), "top_prototypes": items, "figure": None}
        entry["summary"] = _statement_words(entry)
        if options.all_figures or called[j] or s in options.statements:
            entry["figure"] = f"statement_{safe_name(s)}.png"
            drawers[entry["figure"]] = _statement_figure(display, gallery, entry, context)
        statements.append(entry)

    result = {
        "model": str(model_dir), "kind": "protoecgnet", "record": ecg.source, "label_set": config.get("label_set"),
        "head": config.get("head", "masked fusion"), "probabilities": dict(zip(labels, (float(p) for p in probs))),
        "calibrated_probabilities": dict(zip(labels, calibrated.tolist())),
        "thresholds": dict(zip(labels, clf.thresholds.tolist())), "note": note,
        "record_s": x.shape[-1] / rate, "limit": options.limit, "windows": WINDOW_NOTE, "lead_ranking": OCCLUSION_NOTE,
        "similarity_reference": reference_info,
        "faithfulness": {"invariant": "logit = bias + sum over prototypes of weight x normalised similarity",
                         "max_error": max_error, "tolerance": FAITHFUL_TOL, "satisfied": max_error <= FAITHFUL_TOL},
        "statements": statements,
    }
    return Explanation("protoecgnet", str(ecg.source), result, drawers, format_text(result))


def _record_windows(net, x) -> dict[int, Any]:
    """The model-input windows a record is scored by, keyed by start sample (one window at 0 for a model
    that scores one input-length window)."""
    if not hasattr(net, "record_windows"):
        return {0: x}
    windows, starts = net.record_windows(x)
    return {int(s): w for s, w in zip(starts.tolist(), windows)}


class _Context:
    """What every evidence item from one deciding window needs: the model and its output on that window (input
    ``x`` starting at record sample ``offset``), the gallery and the similarity reference."""

    def __init__(self, net, x, offset: int, record_samples: int, table, gallery, reference, rate: float):
        import torch

        self.net, self.x, self.offset, self.table, self.gallery = net, x, offset, table, gallery
        self.record_samples = record_samples
        self.reference, self.rate = reference, rate
        with torch.no_grad():
            self.out = net(x[None])
        self._leads: dict[int, np.ndarray] = {}

    def window_info(self) -> dict[str, Any]:
        """The window of the record whose logit decides the statement (the highest one), in seconds."""
        end = min(self.offset + self.x.shape[-1], self.record_samples)
        return {"start_s": self.offset / self.rate, "end_s": end / self.rate,
                "whole_record": self.offset == 0 and end >= self.record_samples,
                "note": "the model scores a record by windows of its input length; a statement's logit and its "
                        "contributions are those of its deciding window (the highest logit)"}

    def span(self, branch: str, window: int, mode: str) -> tuple[int, int]:
        import torch

        start, end = self.net.branches[branch].input_spans(torch.tensor(int(window)), mode=mode).tolist()
        return int(start), int(end)

    def evidence(self, p: int, statement: str, contribution: float, weight: float, total: float) -> dict[str, Any]:
        row = self.table[p]
        branch, index = row["branch"], row["index"]
        info = self.gallery.prototypes[p]
        if info["branch"] != branch or info["index"] != index:
            raise ECGError(None, f"gallery row {p} describes {info['branch']}/{info['index']}, the model {branch}/{index}")
        window = int(self.out.best_window[branch][0, index])
        start, end = self.span(branch, window, "receptive_field")
        foot = self.span(branch, window, "footprint")
        if p not in self._leads:
            self._leads[p] = lead_drops(self.net, self.x, branch, index, window, (start, end))
        drops = self._leads[p]
        ranked = np.argsort(-drops, kind="stable")
        similarity = float(self.out.similarities[branch][0, index])
        percentile = None if self.reference is None else float(similarity_percentile(similarity, self.reference[p]))
        source = None
        if info.get("projected"):
            s0, s1 = self.span(branch, info["window"], "receptive_field")
            source = {"ecg_id": info["ecg_id"], "labels": info["source_labels"], "start_s": s0 / self.rate,
                      "end_s": s1 / self.rate, "footprint_start_s": info["start"] / self.rate,
                      "footprint_end_s": info["end"] / self.rate, "similarity_at_projection": info["similarity"]}
        whole = start == 0 and end >= self.x.shape[-1]
        start, end = start + self.offset, min(end + self.offset, self.record_samples)
        foot = (foot[0] + self.offset, min(foot[1] + self.offset, self.record_samples))
        item = {"prototype": p, "branch": branch, "index": index, "prototype_label": row["label"],
                "own_statement": row["label"] == statement, "relation": _relation(self.net.config, statement, row["label"]),
                "contribution": float(contribution), "weight": float(weight),
                "share_of_evidence": float(contribution / total) if total else None,
                "normalized_similarity": float(self.out.normalized[branch][0, index]),
                "similarity": similarity, "similarity_percentile": percentile,
                "query_window": {"start_s": start / self.rate, "end_s": end / self.rate, "span": "receptive_field",
                                 "latent_start": window, "whole_window": whole,
                                 "whole_record": whole and self.offset == 0 and end >= self.record_samples,
                                 "footprint_start_s": foot[0] / self.rate, "footprint_end_s": foot[1] / self.rate},
                "leads": [{"lead": STANDARD_LEADS[i], "similarity_drop": float(drops[i])} for i in ranked],
                "marked_leads": [STANDARD_LEADS[i] for i in ranked[:MARKED_LEADS] if drops[i] > 0],
                "source": source}
        item["words"] = _evidence_words(item, statement)
        return item


def _relation(config, statement: str, label: str) -> dict[str, Any] | None:
    """Why a related head lets ``statement`` read a prototype of ``label``: their training co-occurrence (Jaccard above
    the head's threshold) and/or one diagnostic group (``ProtoECGNetConfig.related_groups``); None for its own
    prototypes and for heads that read every prototype."""
    if label == statement or config.fusion != "related":
        return None
    jaccard = (config.cooccurrence or {}).get(statement, {}).get(label)
    group = (config.related_groups or {}).get(statement)
    return {"jaccard": jaccard if jaccard is not None and jaccard > config.related_threshold else None,
            "group": group if group is not None and group == (config.related_groups or {}).get(label) else None}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _evidence_words(item: dict, statement: str) -> str:
    """One sentence: what the record looks like, where, and what that does to the statement's logit."""
    label = item["prototype_label"]
    src = item["source"]
    origin = f"from PTB-XL record {src['ecg_id']}" if src else "(unprojected: no source record)"
    pct = item["similarity_percentile"]
    level = (f"{_ordinal(round(pct))} percentile of training matches" if pct is not None
             else f"similarity {item['similarity']:.3f}; percentile not available")
    q = item["query_window"]
    where = ("over the whole record" if q["whole_record"] else
             f"over the whole window {q['start_s']:.2f}-{q['end_s']:.2f} s" if q["whole_window"] else
             f"at {q['start_s']:.2f}-{q['end_s']:.2f} s")
    leads = f", mostly in {', '.join(item['marked_leads'])}" if item["marked_leads"] else ""
    c = item["contribution"]
    share = f" ({abs(item['share_of_evidence']):.0%} of its evidence)" if item["share_of_evidence"] is not None else ""
    effect = (f"adds {c:+.2f} to the {statement} logit{share}" if c >= 0
              else f"takes {c:+.2f} from the {statement} logit{share}")
    if item["normalized_similarity"] >= 0:
        text = f"looks like this {label} prototype {origin} ({level}) {where}{leads}; {effect}"
    else:
        text = (f"looks less like this {label} prototype {origin} than the typical training record does ({level}) "
                f"{where}{leads}; {effect}")
    if not item["own_statement"]:
        text += f"; evidence from another statement's prototype ({label}), not one of {statement}'s own"
        why = item["relation"] or {}
        reasons = ([f"they co-occur in training (Jaccard {why['jaccard']:.2f})"] if why.get("jaccard") else []) + (
            [f"both are {describe(why['group']) or why['group']} statements"] if why.get("group") else [])
        if reasons:
            text += ": " + " and ".join(reasons)
        if item["weight"] < 0:
            text += f" (negative weight: looking like {label} counts against {statement})"
    return text


def _statement_words(entry: dict) -> str:
    shown, own = entry["shown_share_of_evidence"], entry["own_share_of_evidence"]
    w = entry["window"]
    text = "" if w["whole_record"] else f"decided by the window {w['start_s']:.2f}-{w['end_s']:.2f} s: "
    text += (f"logit {entry['logit']:+.2f} = bias {entry['bias']:+.2f} + prototype contributions "
             f"{entry['sum_contributions']:+.2f}")
    if shown is not None:
        text += (f"; the {len(entry['top_prototypes'])} shown carry {shown:.0%} of the evidence (sum of |contributions|), "
                 f"{entry['statement']}'s own prototypes {own:.0%}")
    return text


def display_ecg(ecg: ECG, config: dict, rate: float) -> ECG:
    """The record as the explanation's figures draw it: the checkpoint's display pipeline (in the record's
    units; else its model pipeline), over the whole record when the model scores the whole record."""
    from ..preprocess import Pipeline

    steps = (config.get("display_pipeline") or config["pipeline"]).get("steps", [])
    if not any(step.get("step") == "fix_length" for step in config["pipeline"].get("steps", [])):
        # the model reads the whole record (by windows): so does the display, whatever length it once fixed
        steps = [step for step in steps if step.get("step") != "fix_length"]
    pipe = Pipeline.from_dict({"steps": steps})
    signal, out_rate = pipe.apply_signal(ecg.signal, ecg.sampling_rate)
    units = ecg.units if "display_pipeline" in config else "a.u."
    return ECG(np.asarray(signal, dtype=np.float32), out_rate, STANDARD_LEADS, units=units, source=ecg.source)


def _cut(signal: np.ndarray, rate: float, start_s: float, end_s: float, leads: list[str]) -> np.ndarray:
    rows = [STANDARD_LEADS.index(lead) for lead in leads]
    return np.asarray(signal[rows, round(start_s * rate):round(end_s * rate)], dtype=np.float32)


def _statement_figure(display: ECG, gallery, entry: dict, context: _Context):
    """Drawer: where the shown prototypes matched (lead II, whole record), then each match beside its source."""
    s = entry["statement"]
    rate = display.sampling_rate
    bars = [(it["query_window"]["start_s"], it["query_window"]["end_s"], f"#{k + 1}", COLORS[k % len(COLORS)])
            for k, it in enumerate(entry["top_prototypes"])]
    w = entry["window"]
    where = "this record" if w["whole_record"] else f"this record's deciding window {w['start_s']:.2f}-{w['end_s']:.2f} s"
    overview = Panel(_cut(display.signal, rate, w["start_s"], w["end_s"], [OVERVIEW_LEAD]), rate, [OVERVIEW_LEAD],
                     f"{where}, lead {OVERVIEW_LEAD}: the receptive field of each shown prototype's matched window",
                     start_s=w["start_s"], units=display.units, bars=bars)
    rows = [([], [overview])]
    for k, it in enumerate(entry["top_prototypes"]):
        q = it["query_window"]
        leads = [d["lead"] for d in it["leads"][:MARKED_LEADS]]
        notes = {d["lead"]: f"drop {d['similarity_drop']:+.3f}" for d in it["leads"][:MARKED_LEADS]}
        query = Panel(_cut(display.signal, rate, q["start_s"], q["end_s"], leads), rate, leads,
                      f"this record, {q['start_s']:.2f}-{q['end_s']:.2f} s", start_s=q["start_s"],
                      units=display.units, marked=tuple(it["marked_leads"]), notes=notes)
        panels = [query]
        src = it["source"]
        if src is not None:
            _, signal = gallery.source(it["prototype"])
            panels.append(Panel(_cut(signal, gallery.sampling_rate, src["start_s"], src["end_s"], leads),
                                gallery.sampling_rate, leads,
                                f"prototype {it['branch']}/{it['index']} source: PTB-XL {src['ecg_id']} "
                                f"[{', '.join(src['labels'])}], {src['start_s']:.2f}-{src['end_s']:.2f} s",
                                start_s=src["start_s"], units=gallery.units, marked=tuple(it["marked_leads"])))
        rows.append(([f"#{k + 1}: {it['words']}."], panels))
    title = [(f"{s} ({describe(s)}): P = {entry['calibrated_probability']:.2f} "
              f"({'called' if entry['called'] else 'not called'} at {entry['threshold']:.2f})"),
             entry["summary"],
             f"Shown windows are receptive fields: {WINDOW_NOTE.split(': ', 1)[1]}.",
             "Leads drawn: the 3 whose blanking lowers the match most (red: a positive drop); same scale everywhere."]
    return panel_figure(title, rows, footer=f"{entry['statement']}: ProtoECGNet explanation of {display.source}")


def format_text(result: dict) -> str:
    """A short human-readable summary of ``explain``'s result."""
    lines = [f"{result['record']}: ProtoECGNet ({result['head']})"]
    if result.get("note"):
        lines.append(result["note"])
    if not result["similarity_reference"]["available"]:
        lines.append(f"similarity percentiles {result['similarity_reference']['reason']}")
    for s in result["statements"]:
        lines.append(f"{s['statement']} ({describe(s['statement'])})  P={s['calibrated_probability']:.2f} "
                     f"({'called' if s['called'] else 'not called'} at {s['threshold']:.2f}"
                     f"{'' if s['assessable'] else ', not assessable'}; network {s['probability']:.2f})  {s['summary']}")
        for it in s["top_prototypes"]:
            lines.append(f"   {it['contribution']:+.2f}  {it['branch']}/{it['index']}: {it['words']}")
    f = result["faithfulness"]
    lines.append(f"faithfulness: max |logit - bias - contributions| = {f['max_error']:.2e} "
                 f"({'ok' if f['satisfied'] else 'BROKEN'})")
    return "\n".join(lines)
