"""Benchmark: every shipped classifier on the test fold before and after its stored calibration.

For each shipped classifier the network's own probabilities (every threshold
0.5, every statement assessable) and the calibrated ones (the maps,
thresholds and not-assessable statements fitted on fold 9 by
``bench/ship.py --calibrate-only``) are scored on the local PTB-XL test fold
(fold 10, read here for the final table only) with ``ecglens.evaluate`` on the
same 1,000 bootstrap resamples: macro AUROC with its interval (calibration is
monotone, so it must not move), Brier score and expected calibration error
averaged over statements, sample F1, and called vs true statements per record
over all and over the assessable statements. A reliability diagram of each
calibrated model is drawn beside the tables.

    .venv/bin/python bench/calibration.py [--data DIR]

Writes bench/results/calibration.json, calibration.md and calibration_<model>.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / "work"
MODELS = ("baseline", "protoecgnet", "factorecg", "beat-blackbox")
TEST_FOLD = 10
TARGETS = {"called_to_true": (0.7, 1.3), "ece_mean_max": 0.05}


def summarise(report: dict) -> dict:
    cal, at = report["calibration"], report["at_thresholds"]
    return {"macro_auroc": report["macro_auroc"], "interval": report["bootstrap"],
            "brier_mean": cal["brier_mean"], "ece_mean": cal["ece_mean"], "sample_f1": at["sample_f1"],
            "called_per_record": at["all"]["called_per_record"], "true_per_record": at["all"]["true_per_record"],
            "called_to_true": at["all"]["called_to_true"],
            "assessable_called_to_true": at["assessable"]["called_to_true"],
            "n_assessable": at["assessable"]["n_labels"]}


def main(argv=None) -> int:
    import matplotlib.pyplot as plt

    import ecglens
    from ecglens.viz.reliability import plot_reliability

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ptb-xl", help="PTB-XL root")
    args = p.parse_args(argv)
    boot = WORK / "bootstrap" / f"fold{TEST_FOLD}_all_redrawn.npy"
    rows = []
    for name in MODELS:
        model = ecglens.load_model(name)
        clf = model.loaded
        common = {"fold": TEST_FOLD, "cache_dir": WORK / "cache", "bootstrap": boot}
        with clf.raw():
            before = ecglens.evaluate(clf, args.data, **common).report
        after = ecglens.evaluate(clf, args.data, **common).report
        figure = RESULTS / f"calibration_{name}.png"
        fig = plot_reliability(after["calibration"], title=f"{name}: calibrated, test fold {TEST_FOLD}")
        fig.savefig(figure, dpi=80)
        plt.close(fig)
        rows.append({"model": name, "fitted_on": f"fold {clf.calibration.facts['fold']}",
                     "method": clf.calibration.method, "before": summarise(before), "after": summarise(after),
                     "figure": figure.name})
        print(f"{name}: done", file=sys.stderr)
    lo, hi = TARGETS["called_to_true"]
    for r in rows:
        a = r["after"]
        r["targets_met"] = {"called_to_true": lo <= a["called_to_true"] <= hi,
                            "assessable_called_to_true": lo <= a["assessable_called_to_true"] <= hi,
                            "ece": a["ece_mean"] <= TARGETS["ece_mean_max"],
                            "auroc_unchanged": abs(a["macro_auroc"] - r["before"]["macro_auroc"]) < 1e-9}
    result = {"test_fold": TEST_FOLD, "targets": TARGETS, "rows": rows, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    from ecglens.atomic import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / "calibration.json", result, indent=2)
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = ["# Calibration, thresholds and abstention from calls: shipped classifiers, test fold 10", "",
             "Before: the network's probabilities, every threshold 0.5, every statement assessable. After: the stored "
             "calibration (Platt maps pooled for statements with fewer than 5 validation positives, best-F1 thresholds "
             "capped at 1.5 calls per validation positive, statements with fewer than 10 training positives not "
             "assessable), fitted on fold 9. Fold 10 is read here once, for this table. ECE: 10 equal-width bins, "
             "averaged over the 71 statements. 90% interval from 1,000 resamples that keep every scored label "
             f"scorable. Targets: called/true per record in {lo}-{hi}, mean ECE <= {TARGETS['ece_mean_max']}, "
             "AUROC unchanged. Regenerate with `python bench/calibration.py`.", "",
             "| model | | macro AUROC | 90% CI | Brier | ECE | sample F1 | called / true per record | called/true (assessable) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for when in ("before", "after"):
            s = r[when]
            ci = s["interval"] or {}
            lines.append(f"| {r['model']} | {when} | {f(s['macro_auroc'])} | {f(ci.get('low'))}-{f(ci.get('high'))} | "
                         f"{f(s['brier_mean'], 4)} | {f(s['ece_mean'], 4)} | {f(s['sample_f1'])} | "
                         f"{f(s['called_per_record'], 2)} / {f(s['true_per_record'], 2)} ({f(s['called_to_true'], 2)}) | "
                         f"{f(s['assessable_called_to_true'], 2)} ({s['n_assessable']} statements) |")
    lines += ["", "| model | called/true in range | assessable in range | ECE <= 0.05 | AUROC unchanged |",
              "|---|---|---|---|---|"]
    for r in rows:
        t = r["targets_met"]
        lines.append(f"| {r['model']} | {t['called_to_true']} | {t['assessable_called_to_true']} | {t['ece']} | "
                     f"{t['auroc_unchanged']} |")
    lines += ["", "Reliability diagrams: " + ", ".join(f"`{r['figure']}`" for r in rows) + "."]
    write_text_atomic(RESULTS / "calibration.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
