"""Collect everything about one record for its report: header, quality, measurements, statements, explanations.

``Reporter`` loads the models once and turns each record into a ``Report``:
its JSON-ready ``data`` (what the page says) and its ``html`` (the page, all
figures inline). Figures are drawn here only for what the page shows.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ECGError
from ..io.record import ECG
from . import figures as fig
from .provenance import model_provenance

# qLST re-synthesis: an RMSE of the VAE's reconstruction of the patient's beat above this is about twice the
# median test record's (45 uV, bench/results/factorecg_reconstruction.md): the sweep is then a poor likeness.
LOW_FIDELITY_RMSE_UV = 100.0
LOW_SUCCESS_RATE = 0.8  # below this share of queries reached, the traversal's answers are flagged
SECTION_ORDER = ("protoecgnet", "factorecg", "qlst")
LONG_RECORD_S = 10.0  # a record longer than this is scored by windows: each statement's deciding window is shown
MARKS = (("P on", "p_onset_ms"), ("QRS on", "qrs_onset_ms"), ("QRS off", "qrs_offset_ms"), ("T end", "t_end_ms"))


@dataclass
class ReportOptions:
    """What the page shows: paper ``speed`` (mm/s) and ``gain`` (mm/mV); prototypes per ProtoECGNet statement;
    FactorECG figures (beats moved toward normal, traversals); qLST sweeps."""

    speed: float = fig.SPEED_MM_S
    gain: float = fig.GAIN_MM_MV
    prototypes: int = 3
    toward_normal: int = 2
    traversals: int = 2
    sweeps: int = 2

    def __post_init__(self):
        if not (5 <= self.speed <= 100 and 2 <= self.gain <= 40):
            raise ECGError(None, f"paper speed {self.speed:g} mm/s or gain {self.gain:g} mm/mV out of range "
                                 "(speed 5-100, gain 2-40)")
        for name in ("prototypes", "toward_normal", "traversals", "sweeps"):
            if getattr(self, name) < 0:
                raise ECGError(None, f"{name} must be 0 or more, got {getattr(self, name)}")


@dataclass
class Report:
    """One record's page: ``data`` (JSON-ready), ``html`` (self-contained) and the seconds it took."""

    name: str
    data: dict[str, Any]
    html: str
    seconds: float = 0.0
    figures: int = 0


class Reporter:
    """Shipped or named models loaded once, turning records into ``Report`` pages.

    ``workdir`` is where explanation drawers write their PNG for a moment (a
    temporary folder inside it, removed at once): the output directory.
    """

    def __init__(self, models: Sequence[str] | None = None, options: ReportOptions | None = None,
                 workdir: str | os.PathLike = ".", progress: bool = False):
        from tqdm import tqdm

        from ..api import list_models, load_model

        names = list(models) if models else list_models()
        self.options = options or ReportOptions()
        self.workdir = Path(workdir)
        self.models = [load_model(n) for n in tqdm(names, desc="models", unit="model", disable=not progress)]
        self.provenance = [model_provenance(m) for m in self.models]

    @property
    def classifiers(self):
        return [m for m in self.models if m.can_predict]

    def build_file(self, path: str | os.PathLike, sampling_rate: float | None = None, units: str | None = None,
                   name: str | None = None, back: str | None = None) -> Report:
        """Read a record (any supported format) and build its report."""
        from ..io import read_ecg

        return self.build(read_ecg(path, sampling_rate=sampling_rate, units=units), name=name, back=back)

    def build(self, ecg: ECG, name: str | None = None, back: str | None = None) -> Report:
        """The report of one record (``name``: how the page calls it, by default its file name; ``back``: a link
        back, for the viewer)."""
        from .render import render_report

        start = time.perf_counter()
        header = _header(ecg)
        if name:  # the viewer names a record by what the user gave it, not where it was read from
            header["source"] = name
        name = name or (Path(str(ecg.source)).name if ecg.source else "record")
        data: dict[str, Any] = {"record": name, "header": header, "quality": _quality(ecg)}
        figs: dict[str, Any] = {}
        self.workdir.mkdir(parents=True, exist_ok=True)
        data["measurements"], figs["beat"] = self._measurements(ecg)
        figs["ecg"] = self._paper(ecg)
        data["statements"], predictions = self._statements(ecg, data["quality"])
        data["models"] = self.provenance
        data["sections"] = []
        explainers = sorted((m for m in self.models if m.can_explain),
                            key=lambda m: SECTION_ORDER.index(m.kind.name) if m.kind.name in SECTION_ORDER else 99)
        for model in explainers:
            if data["quality"].get("judgeable", True):
                data["sections"].append(self._explain(model, ecg, predictions))
            else:  # an abstention: no model's reasoning about this record is shown as if it could be trusted
                data["sections"].append({"kind": model.kind.name, "model": model.name, "warnings": [], "n_figures": 0,
                                         "error": "the record is not judgeable (see the quality banner above), so "
                                                  "no explanation is drawn"})
        data["warnings"] = _page_warnings(data)
        html = render_report(data, figs, self.options, back=back)
        count = sum(1 for v in figs.values() if v) + sum(s.get("n_figures", 0) for s in data["sections"])
        return Report(name, data, html, time.perf_counter() - start, count)

    # -- header parts --------------------------------------------------------------------------------------

    def _paper(self, ecg: ECG) -> str:
        shown = _standard_or_own(ecg)
        units = "mV" if shown.units.strip().lower() == "mv" else shown.units
        return fig.ecg_paper_svg(shown.signal, shown.sampling_rate, shown.leads, speed=self.options.speed,
                                 gain=self.options.gain, units=units)

    def _measurements(self, ecg: ECG) -> tuple[dict[str, Any], str | None]:
        from ..beats import ecg_measure, median_beat

        shown = _standard_or_own(ecg)
        try:
            beat, info = median_beat(shown, before=0.4, after=0.8)
            rr = 60.0 / info["heart_rate"] if info["heart_rate"] else None
            m = ecg_measure(beat, info["sampling_rate"], info["r_index"], rr=rr, leads=info["leads"])
        except ECGError as exc:
            return {"available": False, "reason": exc.problem}, None
        keep = ("heart_rate", "pr_interval_ms", "qrs_duration_ms", "qt_ms", "qtc_ms", "axis_deg", "rr_ms",
                "p_onset_ms", "qrs_onset_ms", "qrs_offset_ms", "t_end_ms")
        out = {"available": True, "beats_found": info["beats_found"], "beats_kept": info["beats_kept"],
               **{k: m.get(k) for k in keep}}
        marks = [(label, m[key]) for label, key in MARKS if m.get(key) is not None]
        svg = fig.beat_svg(beat, info["sampling_rate"], info["r_index"], info["leads"], marks,
                           gain=self.options.gain, title=f"median of {info['beats_kept']} beats with its fiducials")
        return out, svg

    def _statements(self, ecg: ECG, quality: dict) -> tuple[dict[str, Any], dict[str, Any]]:
        """One row per statement any model scores: each model's calibrated probability, threshold and call."""
        from ..statements import describe

        predictions, columns = {}, []
        for model in self.classifiers:
            p = model.predict(ecg, on_error="skip", quality=False)
            skipped = dict(p.skipped).get(0)
            predictions[model.name] = p
            columns.append({"model": model.name, "kind": model.kind.name, "not_judged": skipped})
        labels = list(dict.fromkeys(s for p in predictions.values() for s in p.labels))
        file_labels = set(ecg.labels or ())
        rows = []
        judgeable = quality.get("judgeable", True)
        for s in labels:
            cells = []
            for col in columns:
                p = predictions[col["model"]]
                if s not in p.labels or col["not_judged"]:
                    cells.append(None)
                    continue
                j = p.labels.index(s)
                prob, thr, ok = float(p.probabilities[0, j]), float(p.thresholds[j]), bool(p.assessable[j])
                cells.append({"probability": prob, "threshold": thr, "assessable": ok,
                              "called": bool(ok and judgeable and prob >= thr)})
            scored = [c for c in cells if c is not None]
            assessing = [c for c in scored if c["assessable"]]
            rows.append({"code": s, "name": describe(s), "cells": cells, "in_file": s in file_labels,
                         "max_probability": max((c["probability"] for c in scored), default=0.0),
                         "n_called": sum(c["called"] for c in assessing), "n_assessing": len(assessing),
                         "not_assessable": bool(scored) and not assessing})
        rows.sort(key=lambda r: (-r["n_called"], -r["max_probability"]))
        for r in rows:
            r["agreement"] = _agreement(r)
        return {"columns": columns, "rows": rows, "judgeable": judgeable}, predictions

    # -- explanations --------------------------------------------------------------------------------------

    def _explain(self, model, ecg: ECG, predictions: dict) -> dict[str, Any]:
        kind = model.kind.name
        section: dict[str, Any] = {"kind": kind, "model": model.name, "warnings": [], "n_figures": 0}
        try:
            if kind == "protoecgnet":
                self._protoecgnet(model, ecg, section)
            elif kind == "factorecg":
                self._factorecg(model, ecg, section)
            elif kind == "qlst":
                self._qlst(model, ecg, predictions, section)
            else:
                explanation = model.explain(ecg)
                section["text"] = explanation.text
                _collect_warnings(explanation.data, section)
        except ECGError as exc:
            section["error"] = exc.problem
        return section

    def _protoecgnet(self, model, ecg: ECG, section: dict) -> None:
        """The explainer's own words for each shown prototype (receptive-field window, percentile among training
        matches, leads, contribution and share), its one-line summary per statement and deciding window; the
        page only adds the matched windows and the prototypes' sources on paper."""
        from ..explain.protoecgnet import display_ecg, model_resources

        explanation = model.explain(ecg, top=self.options.prototypes)
        data = explanation.data
        _collect_warnings(data, section)
        gallery = model_resources(model.loaded.model.net, model.directory)[0]
        std = ecg.standard12()
        # as the explainer's figures show it: the display pipeline over the whole record the model scored
        shown = display_ecg(std, model.config, std.sampling_rate)
        display, rate, leads = shown.signal, shown.sampling_rate, list(shown.leads)
        record_s = data.get("record_s", display.shape[-1] / rate)
        reference = data.get("similarity_reference") or {}
        section.update(note=data.get("note"), head=data.get("head"), faithfulness=data.get("faithfulness"),
                       record_s=record_s, windows=data.get("windows"), lead_ranking=data.get("lead_ranking"),
                       similarity_reference=reference, long_record=record_s > LONG_RECORD_S + 1e-6, statements=[])
        if reference and not reference.get("available", True):
            section["warnings"].append(f"similarity percentiles {reference.get('reason', 'not available')}")
        for s in data["statements"]:
            entry = {k: s.get(k) for k in ("statement", "calibrated_probability", "threshold", "called", "assessable",
                                           "logit", "bias", "sum_contributions", "shown_contributions",
                                           "shown_share_of_evidence", "own_share_of_evidence", "summary")}
            entry["name"] = _describe(s["statement"])
            entry["window"] = window = s.get("window") or {"start_s": 0.0, "end_s": record_s, "whole_record": True}
            entry["evidence"] = []
            entry["window_svg"] = None
            marks = []
            for i, item in enumerate(s["top_prototypes"]):
                color = fig.SHADE_COLORS[i % len(fig.SHADE_COLORS)]
                q = item["query_window"]
                # the raw cosine similarity is left out: for these prototypes it is nearly constant (0.987-0.994)
                # and says little; the page gives its percentile among training matches (in the words)
                ev = {k: v for k, v in item.items() if k not in ("similarity", "normalized_similarity")}
                ev.update(color=color, query_svg=None, source_svg=None)
                if q["end_s"] > q["start_s"]:
                    ev["query_svg"] = fig.window_svg(display, rate, leads, q["start_s"], q["end_s"], color=color,
                                                     gain=self.options.gain,
                                                     label=f"this ECG, {q['start_s']:.2f}-{q['end_s']:.2f} s")
                    marks.append((q["start_s"], q["end_s"], color, f"#{i + 1}"))
                src = item.get("source")
                if src is not None:
                    _, signal = gallery.source(item["prototype"])
                    if signal is not None:
                        ev["source_svg"] = fig.window_svg(
                            signal, gallery.sampling_rate, leads, src["start_s"], src["end_s"], color=color,
                            gain=self.options.gain, label=f"prototype {item['prototype']}: PTB-XL {src['ecg_id']}")
                section["n_figures"] += (ev["query_svg"] is not None) + (ev["source_svg"] is not None)
                entry["evidence"].append(ev)
            if section["long_record"]:  # where in a long record the statement was decided, and its matches
                entry["window_svg"] = fig.record_window_svg(
                    display, rate, leads, window["start_s"], window["end_s"], marks, gain=self.options.gain,
                    label=f"{s['statement']}: deciding window {window['start_s']:.2f}-{window['end_s']:.2f} s "
                          f"of {record_s:.1f} s")
                section["n_figures"] += 1
            section["statements"].append(entry)

    def _factorecg(self, model, ecg: ECG, section: dict) -> None:
        from ..explain.factorecg import TRAVERSE_SD
        from ..statements import beyond_one_beat

        explanation = model.explain(ecg)
        data = explanation.data
        _collect_warnings(data, section)
        top_factors = {c["factor"] for s in data["statements"] for c in s["top_contributions"]
                       if c.get("kind", "factor") == "factor"}
        section.update(note=data.get("note"), reconstruction=data.get("reconstruction"), beat=data.get("beat"),
                       faithfulness=data.get("faithfulness"), statements=[], traversals=[],
                       rhythm_features=data.get("rhythm_features") or [])
        rows = [(f"factor {f['factor']}", f["percentile"], f["factor"] in top_factors) for f in data["factors"]]
        section["percentiles_svg"] = fig.percentile_svg(rows)
        section["factors"] = [f for f in data["factors"] if f["factor"] in top_factors]
        rhythm = beyond_one_beat()
        drawn = 0
        for s in data["statements"]:
            entry = {k: s.get(k) for k in ("statement", "calibrated_probability", "threshold", "called", "assessable",
                                           "logit", "intercept", "sum_contributions")}
            entry["name"] = _describe(s["statement"])
            entry["contributions"] = [{**c, "words": _factor_words(s["statement"], c)} for c in s["top_contributions"]]
            entry["beyond_one_beat"] = s.get("beyond_one_beat", s["statement"] in rhythm)
            entry["judged_from"] = s.get("judged_from")
            tn = s.get("toward_normal")
            if tn and drawn < self.options.toward_normal and tn.get("figure") in explanation.figures:
                entry["toward_normal"] = {**tn, "png": fig.drawn_png(explanation.figures[tn["figure"]], self.workdir)}
                drawn += 1
            section["statements"].append(entry)
        by_factor = {f["factor"]: f for f in data["factors"]}
        default = (float(min(TRAVERSE_SD)), float(max(TRAVERSE_SD)))
        for t in data["traversals"][:self.options.traversals]:
            if t.get("figure") in explanation.figures:
                own = by_factor.get(t["factor"], {})
                values = t.get("values_sd") or list(default)
                # the traversal's own range: -3..+3 SD, widened to reach this patient's value when it lies outside
                section["traversals"].append({**t, "value_std": t.get("patient_value_sd", own.get("value_std")),
                                              "percentile": own.get("percentile"),
                                              "range_sd": (float(values[0]), float(values[-1])),
                                              "default_range_sd": default,
                                              "widened": values[0] < default[0] - 1e-9 or values[-1] > default[1] + 1e-9,
                                              "png": fig.drawn_png(explanation.figures[t["figure"]], self.workdir)})
        section["n_figures"] = 1 + drawn + len(section["traversals"])

    def _qlst(self, model, ecg: ECG, predictions: dict, section: dict) -> None:
        from ..statements import beyond_one_beat

        statements = list(model.labels)
        classifier = (model.config.get("classifier") or {}).get("path")
        section["classifier"] = classifier
        rhythm = beyond_one_beat()
        prediction = predictions.get(classifier)
        if prediction is not None and all(s in prediction.labels for s in statements):
            score = {s: float(prediction.probabilities[0, prediction.labels.index(s)]) for s in statements}
        else:
            score = None
        ranked = sorted(statements, key=lambda s: -score[s]) if score else statements
        judged = [s for s in ranked if s not in rhythm]
        chosen = judged[:self.options.sweeps] if score else judged
        if not chosen:
            section["statements"] = []
            return
        explanation = model.explain(ecg, statements=chosen)
        data = explanation.data
        _collect_warnings(data, section)
        beat = data.get("beat") or {}
        section.update(scored_on=data.get("scored_on"), beat=beat, tolerance=data.get("tolerance"), statements=[])
        rmse = beat.get("reconstruction_rmse_uv")
        if rmse is not None and rmse > LOW_FIDELITY_RMSE_UV:
            section["warnings"].append(
                f"low re-synthesis fidelity: the VAE redraws this patient's beat with {rmse:.0f} uV RMSE (over "
                f"{LOW_FIDELITY_RMSE_UV:.0f} uV, about twice a typical record's); the sweep shows a poor likeness "
                "of this beat")
        cutoff = score[chosen[-1]] if score else None
        skipped = [s for s in ranked if s in rhythm and (cutoff is None or score[s] >= cutoff)]
        if skipped:
            section["warnings"].append(
                f"{', '.join(f'{s} ({_describe(s)})' for s in skipped)}: cannot be judged from one beat (rhythm or "
                "beat-sequence statements); qLST sweeps a median beat, so these are not explained here")
        ranked_data = sorted(data["statements"], key=lambda s: -(s.get("score_record") or s["score_beat"]))
        for s in ranked_data[:self.options.sweeps]:
            entry = {k: s.get(k) for k in ("statement", "score_record", "score_beat", "score_decoded",
                                           "success_rate", "segments", "marked_segments")}
            entry["name"] = _describe(s["statement"])
            entry["sweep_range"] = (s["sweep"][0]["q"], s["sweep"][-1]["q"],
                                    s["sweep"][0]["achieved"], s["sweep"][-1]["achieved"])
            entry["beyond_one_beat"] = s["statement"] in rhythm
            if s["success_rate"] < LOW_SUCCESS_RATE:
                entry["warning"] = (f"the traversal reached only {100 * s['success_rate']:.0f}% of the queried "
                                    f"scores within {data.get('tolerance')}: read the sweep with care")
            if s.get("figure") in explanation.figures:
                entry["png"] = fig.drawn_png(explanation.figures[s["figure"]], self.workdir)
                section["n_figures"] += 1
            section["statements"].append(entry)


def _standard_or_own(ecg: ECG) -> ECG:
    """The 12 standard leads when the record has or can derive them, else the record's own leads."""
    try:
        return ecg.standard12()
    except ECGError:
        return ecg


def _header(ecg: ECG) -> dict[str, Any]:
    meta = ecg.metadata or {}
    return {"source": str(ecg.source or ""), "format": meta.get("format"), "age": meta.get("age"),
            "sex": meta.get("sex"), "sampling_rate": float(ecg.sampling_rate), "duration_s": float(ecg.duration),
            "leads": list(ecg.leads), "labels": list(ecg.labels) if ecg.labels is not None else None,
            "units": ecg.units}


def _quality(ecg: ECG) -> dict[str, Any]:
    from ..quality import assess_ecg

    return assess_ecg(_standard_or_own(ecg)).to_dict()


def _describe(code: str) -> str:
    from ..statements import describe

    return describe(code)


def _agreement(row: dict) -> str:
    if row["n_assessing"] == 0:
        return "not assessable"
    n, k = row["n_called"], row["n_assessing"]
    if n == 0:
        return f"none of {k} call it"
    return "all call it" if n == k else f"{n} of {k} call it"


def _collect_warnings(data: dict, section: dict) -> None:
    """The explanation's own warnings (``warnings`` list, the not-judgeable ``warning``)."""
    for w in [data.get("warning"), *(data.get("warnings") or [])]:
        if w and w not in section["warnings"]:
            section["warnings"].append(str(w))


def _page_warnings(data: dict) -> list[str]:
    out = []
    q = data["quality"]
    if not q.get("judgeable", True):
        out.append(f"record not judgeable ({', '.join(q.get('flags', []))}): no statement is called; "
                   "the probabilities are shown for inspection only")
    for col in data["statements"]["columns"]:
        if col["not_judged"]:
            out.append(f"{col['model']} could not judge this record: {col['not_judged']}")
    return out


def _factor_words(statement: str, c: dict) -> str:
    """One contribution in words: a beat factor (with its percentile) or a rhythm feature."""
    side = "above" if c["value_std"] >= 0 else "below"
    verb = "raises" if c["contribution"] >= 0 else "lowers"
    if c.get("kind") == "rhythm":  # a rhythm feature of the record (FactorECG with rhythm features)
        return (f"{c['description']}: {'n/a' if c['value'] is None else format(c['value'], '.3g')}, "
                f"{abs(c['value_std']):.1f} SD {side} the training mean; it {verb} the log-odds of {statement} by "
                f"{abs(c['contribution']):.2f}.")
    return (f"Factor {c['factor']} is {abs(c['value_std']):.1f} SD {side} the training mean (percentile "
            f"{c['percentile']:.0f}); it {verb} the log-odds of {statement} by {abs(c['contribution']):.2f}. "
            f"{c['description']}")


def summary_row(report: Report) -> dict[str, Any]:
    """What the index shows of a report: quality, the called statements and each statement's top probability."""
    rows = report.data["statements"]["rows"]
    return {"record": report.name, "judgeable": report.data["quality"].get("judgeable", True),
            "flags": report.data["quality"].get("flags", []),
            "called": [r["code"] for r in rows if r["n_called"]],
            "probabilities": {r["code"]: r["max_probability"] for r in rows},
            "seconds": report.seconds}

