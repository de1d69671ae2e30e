"""One JSON-ready report of a model's scores against the truth, and its text table."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ECGError
from .bootstrap import bootstrap_macro_auroc
from .classification import check_names, check_pair, fmax, macro_auroc, per_label_auroc, prevalence_baseline


def evaluate_predictions(y_true, y_score, label_names: Sequence[str], bootstrap_indices=None,
                         y_train=None, alpha: float = 0.90) -> dict:
    """Score ``y_score`` against ``y_true`` (records x labels); a dict that ``json.dump`` accepts.

    Keys: ``n_records``, ``n_labels``, ``macro_auroc``, ``n_scored``, ``excluded``
    (count and the labels without both classes, with why), ``per_label`` (AUROC
    or None, positives), ``fmax`` (value, threshold), ``bootstrap`` (interval on
    ``bootstrap_indices``, else None) and ``prevalence_baseline`` (the naive
    model from ``y_train``, else None). NaN becomes None.
    """
    t, s = check_pair(y_true, y_score)
    names = check_names(label_names, t.shape[1])
    if len(set(names)) != len(names):
        raise ECGError(None, "label names repeat")
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
    }
    if bootstrap_indices is not None:
        report["bootstrap"] = {k: _json_float(v) if isinstance(v, float) else v
                               for k, v in bootstrap_macro_auroc(t, s, bootstrap_indices, alpha).items()}
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


def format_table(report: dict) -> str:
    """The report as readable text: headline numbers, then one line per label."""
    lines = [f"records {report['n_records']}, labels {report['n_labels']} "
             f"({report['n_scored']} scored, {report['excluded']['count']} excluded)"]
    head = f"macro AUROC   {_fmt(report['macro_auroc'])}"
    boot = report.get("bootstrap")
    if boot:
        head += (f"   {100 * boot['alpha']:.0f}% CI {_fmt(boot['low'])}-{_fmt(boot['high'])} "
                 f"({boot['n_resamples']} resamples, {boot['mean_n_scored']:.1f} labels scored on average)")
    lines.append(head)
    lines.append(f"Fmax          {_fmt(report['fmax']['value'])}   at threshold {_fmt(report['fmax']['threshold'], 2)}")
    base = report.get("prevalence_baseline")
    if base:
        lines.append(f"baseline      macro AUROC {_fmt(base['macro_auroc'])}, Fmax {_fmt(base['fmax']['value'])} "
                     f"(training prevalence, {base['n_train']} training records)")
    width = max([5] + [len(name) for name in report["per_label"]])
    lines += ["", f"{'label':<{width}}  {'pos':>5}  {'AUROC':>6}"]
    for name, row in report["per_label"].items():
        lines.append(f"{name:<{width}}  {row['n_positive']:>5}  {_fmt(row['auroc']):>6}")
    if report["excluded"]["count"]:
        lines += ["", "excluded (single class): " + ", ".join(
            f"{e['label']} ({e['reason']})" for e in report["excluded"]["labels"])]
    return "\n".join(lines)


def _json_float(x) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _fmt(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
