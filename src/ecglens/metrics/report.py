"""One JSON-ready report of a model's scores against the truth, and its text table."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ECGError
from .bootstrap import bootstrap_macro_auroc
from .calibration import DEFAULT_BINS, calibration_report
from .classification import (calls_at, check_names, check_pair, check_thresholds, fmax, macro_auroc, per_label_auroc,
                             prevalence_baseline, sample_f1)


def evaluate_predictions(y_true, y_score, label_names: Sequence[str], bootstrap_indices=None,
                         y_train=None, alpha: float = 0.90, thresholds=None, assessable=None,
                         n_bins: int = DEFAULT_BINS) -> dict:
    """Score ``y_score`` against ``y_true`` (records x labels); a dict that ``json.dump`` accepts.

    Keys: ``n_records``, ``n_labels``, ``macro_auroc``, ``n_scored``, ``excluded``
    (count and the labels without both classes, with why), ``per_label`` (AUROC
    or None, positives), ``fmax`` (value, threshold), ``bootstrap`` (interval on
    ``bootstrap_indices``, per label too, else None), ``prevalence_baseline``
    (the naive model from ``y_train``, else None), ``calibration`` (Brier, ECE
    and reliability bins, see ``metrics.calibration``; None when the scores are
    not probabilities in [0, 1]) and ``at_thresholds`` (sample F1 and called vs
    true statements per record at the per-statement ``thresholds``, else None).
    ``assessable`` (k booleans) marks the statements a model may call: the
    others are never called, and calibration and calls are also summarised over
    the assessable ones alone. NaN becomes None.
    """
    t, s = check_pair(y_true, y_score)
    names = check_names(label_names, t.shape[1])
    if len(set(names)) != len(names):
        raise ECGError(None, "label names repeat")
    thresholds, assessable = check_thresholds(thresholds, assessable, t.shape[1])
    per_label = per_label_auroc(t, s, names)
    scored = [v for v in per_label.values() if v is not None]  # the macro_auroc mean, without recomputing
    auc, n_scored = (float(np.mean(scored)) if scored else float("nan")), len(scored)
    positives = t.sum(axis=0).astype(int)
    excluded = [{"label": name, "reason": "no positive records" if positives[j] == 0 else "no negative records"}
                for j, name in enumerate(names) if per_label[name] is None]
    f, thr = fmax(t, s)
    report = {
        "n_records": int(t.shape[0]),
        "n_labels": len(names),
        "macro_auroc": _json_float(auc),
        "n_scored": n_scored,
        "excluded": {"count": len(excluded), "labels": excluded},
        "per_label": {name: {"auroc": per_label[name], "n_positive": int(positives[j])}
                      for j, name in enumerate(names)},
        "fmax": {"value": _json_float(f), "threshold": _json_float(thr)},
        "bootstrap": None,
        "prevalence_baseline": None,
        "calibration": (calibration_report(t, s, names, n_bins, assessable)
                        if ((s >= 0) & (s <= 1)).all() else None),
        "at_thresholds": None if thresholds is None else threshold_report(t, s, names, thresholds, assessable),
    }
    if bootstrap_indices is not None:
        boot = bootstrap_macro_auroc(t, s, bootstrap_indices, alpha)
        boot["per_label"] = {name: None if b is None else {"low": b[0], "high": b[1]}
                             for name, b in zip(names, boot["per_label"])}
        report["bootstrap"] = {k: _json_float(v) if isinstance(v, float) else v for k, v in boot.items()}
    if y_train is not None:
        y_train = np.asarray(y_train)
        if y_train.ndim != 2 or y_train.shape[1] != t.shape[1]:
            raise ECGError(None, f"training labels shaped {y_train.shape}, test labels have {t.shape[1]} columns")
        base = prevalence_baseline(y_train, t.shape[0])
        b_auc, b_scored = macro_auroc(t, base)
        b_f, b_thr = fmax(t, base)
        report["prevalence_baseline"] = {"macro_auroc": _json_float(b_auc), "n_scored": b_scored,
                                         "fmax": {"value": _json_float(b_f), "threshold": _json_float(b_thr)},
                                         "n_train": int(y_train.shape[0])}
    return report


def threshold_report(y_true, y_score, names: list[str], thresholds, assessable=None) -> dict:
    """Calls at per-statement thresholds against the truth: sample F1, and the mean number of statements
    called and true per record, over all statements and over the assessable ones when a mask is given."""
    t = np.asarray(y_true) == 1
    calls = calls_at(y_score, thresholds, assessable)

    def per_record(cols) -> dict:
        called, true = float(calls[:, cols].sum(axis=1).mean()), float(t[:, cols].sum(axis=1).mean())
        return {"n_labels": len(cols), "called_per_record": called, "true_per_record": true,
                "called_to_true": called / true if true else None}

    return {
        "rule": "a statement is called when its probability is at or above its threshold, never when it is not "
                "assessable; sample F1 = mean over records of 2|called & true| / (|called| + |true|), 1 for a "
                "record with neither",
        "sample_f1": sample_f1(t, calls),
        "all": per_record(np.arange(t.shape[1])),
        "assessable": None if assessable is None else per_record(np.flatnonzero(assessable)),
        "per_label": {name: {"threshold": float(thresholds[j]), "n_called": int(calls[:, j].sum()),
                             "n_true_positive": int((calls[:, j] & t[:, j]).sum()),
                             "assessable": None if assessable is None else bool(assessable[j])}
                      for j, name in enumerate(names)},
    }


def format_table(report: dict, descriptions: Mapping[str, str] | None = None) -> str:
    """The report as readable text: headline numbers, then one line per label (with its plain-language
    description when ``descriptions`` maps label codes to text)."""
    lines = [f"records {report['n_records']}, labels {report['n_labels']} "
             f"({report['n_scored']} scored, {report['excluded']['count']} excluded)"]
    head = f"macro AUROC   {_fmt(report['macro_auroc'])}"
    boot = report.get("bootstrap")
    if boot:
        head += (f"   {100 * boot['alpha']:.0f}% CI {_fmt(boot['low'])}-{_fmt(boot['high'])} "
                 f"({boot['n_resamples'] - boot.get('n_incomplete', 0)} of {boot['n_resamples']} resamples, "
                 f"each scoring all {boot['mean_n_scored']:.0f} scored labels)")
    lines.append(head)
    lines.append(f"Fmax          {_fmt(report['fmax']['value'])}   at threshold {_fmt(report['fmax']['threshold'], 2)}")
    base = report.get("prevalence_baseline")
    if base:
        lines.append(f"baseline      macro AUROC {_fmt(base['macro_auroc'])}, Fmax {_fmt(base['fmax']['value'])} "
                     f"(training prevalence, {base['n_train']} training records)")
    cal = report.get("calibration")
    if cal:
        part = cal["assessable"]
        for key, name in (("brier_mean", "Brier"), ("ece_mean", "ECE")):
            extra = f"; {_fmt(part[key])} over {part['n_labels']} assessable" if part else ""
            lines.append(f"{name:<13} {_fmt(cal[key])}   mean over {report['n_labels']} statements{extra}")
        lines.append(f"              ECE binning: {cal['binning']}")
    calls = report.get("at_thresholds")
    if calls:
        lines.append(f"at thresholds sample F1 {_fmt(calls['sample_f1'])}; per record "
                     + "; ".join(f"{what} ({part['n_labels']}): called {part['called_per_record']:.2f}, "
                                 f"true {part['true_per_record']:.2f} ({_fmt(part['called_to_true'], 2)}x)"
                                 for what, part in (("all", calls["all"]), ("assessable", calls["assessable"]))
                                 if part))
    width = max([5] + [len(name) for name in report["per_label"]])
    columns = [("pos", 5), ("AUROC", 6)] + ([("CI", 13)] if boot else []) + \
        ([("Brier", 6), ("ECE", 6)] if cal else []) + ([("thr", 5), ("called", 6)] if calls else [])
    lines += ["", f"{'label':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in columns)
              + ("  description" if descriptions else "")]
    for name, row in report["per_label"].items():
        cells = [f"{row['n_positive']:>5}", f"{_fmt(row['auroc']):>6}"]
        if boot:
            ci = boot.get("per_label", {}).get(name)
            cells.append(f"{(_fmt(ci['low'], 3) + '-' + _fmt(ci['high'], 3)) if ci else '-':>13}")
        if cal:
            cells += [f"{_fmt(cal['per_label'][name]['brier']):>6}", f"{_fmt(cal['per_label'][name]['ece']):>6}"]
        if calls:
            one = calls["per_label"][name]
            cells += [f"{one['threshold']:>5.2f}", f"{one['n_called']:>6}"]
        text = f"  {descriptions.get(name, '')}" if descriptions else ""
        lines.append(f"{name:<{width}}  " + "  ".join(cells) + text)
    if report["excluded"]["count"]:
        lines += ["", "excluded (single class): " + ", ".join(
            f"{e['label']} ({e['reason']})" for e in report["excluded"]["labels"])]
    return "\n".join(lines)


def _json_float(x) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _fmt(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
