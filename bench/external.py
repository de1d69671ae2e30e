"""External validation: every shipped classifier on the PhysioNet/CinC challenge records beside the project.

``../shared/data/external/challenge`` (201 records from CPSC, Georgia and Chapman/Ningbo, SNOMED-CT ``#Dx``) is
for evaluation only: nothing is trained, calibrated, tuned or chosen on it. Each model is scored as shipped by
``ecglens.scoring.evaluate_records`` (the code path of ``ecglens evaluate MODEL --records DIR``): the records'
SNOMED codes map to PTB-XL statements through the package map, and the model is scored on the statements both
vocabularies share (a statement is covered when some SNOMED code maps to it; those without a positive or a
negative record here are listed, not scored). Macro AUROC with a 90% percentile bootstrap interval over 1000
resamples (seed 0) that each keep every scored statement scorable (redrawn until each has a positive and a
negative record), calibration (Brier, ECE over 10 equal-width bins) and calls at each model's stored thresholds.

    .venv/bin/python bench/external.py [--records DIR] [--out bench/results]

Writes ``external.json`` and ``external.md``. The SNOMED codes in the data that map to no statement are listed
with the number of records carrying each and why they stay unmapped (``UNMAPPED``: the challenge's own names
from its dx_mapping_scored.csv / dx_mapping_unscored.csv, and the reason).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from ecglens.scoring import evaluate_records  # noqa: E402
from ecglens.statements import describe  # noqa: E402

MODELS = ("baseline", "protoecgnet", "factorecg", "beat-blackbox")
RECORDS = REPO.parent / "shared" / "data" / "external" / "challenge"
N_RESAMPLES, SEED, ALPHA = 1000, 0, 0.90
# Why a SNOMED code of the challenge data maps to no PTB-XL statement. The map (src/ecglens/data/snomed_to_scp.csv)
# lists only codes whose meaning equals a statement.
UNMAPPED = {
    "428750005": ("NSSTTA", "nonspecific ST-T abnormality",
                  "one combined ST-T finding; PTB-XL codes ST changes (NST_, STD_, STE_) and T changes (NDT, NT_, "
                  "TAB_) apart, and none of them alone means the same"),
    "55930002": ("STC", "ST changes",
                 "not necessarily non-specific: NST_ (non-specific ST changes) is narrower, and STD_/STE_ are "
                 "specific; left unmapped"),
    "164867002": ("OldMI", "old myocardial infarction",
                  "PTB-XL codes an infarction by its location (IMI, ASMI, ...), not as 'old'"),
    "425856008": ("PVT", "paroxysmal ventricular tachycardia", "PTB-XL has no ventricular tachycardia statement"),
    "39732003": ("LAD", "left axis deviation",
                 "the heart axis is a column of ptbxl_database.csv (heart_axis), not a statement"),
    "47665007": ("RAD", "right axis deviation",
                 "the heart axis is a column of ptbxl_database.csv (heart_axis), not a statement"),
    "164930006": ("STIAb", "ST interval abnormal", "an unspecified ST abnormality; no single statement"),
    "164865005": ("MI", "myocardial infarction",
                  "no location; in PTB-XL 'MI' is a diagnostic class, its statements name the location"),
    "426627000": ("Brady", "bradycardia",
                  "origin unstated; PTB-XL has sinus bradycardia (SBRAD) only, which is narrower"),
    "713422000": ("ATach", "atrial tachycardia",
                  "narrower than SVTAC (supraventricular tachycardia): it implies SVTAC but does not equal it"),
    "251223006": ("TPW", "tall P wave", "PTB-XL has no P-wave statement"),
    "233917008": ("AVB", "AV block", "degree unstated; PTB-XL has 1AVB, 2AVB and 3AVB only"),
    "365413008": ("PRWP", "poor R wave progression", "PTB-XL has no such statement"),
    "61721007": ("CVCL/CCVCL", "clockwise or counterclockwise vectorcardiographic loop",
                 "PTB-XL has no rotation statement"),
    "233897008": ("AVRT", "atrioventricular reentrant tachycardia",
                  "narrower than SVTAC/PSVT: it implies them but does not equal either"),
    "164861001": ("MIs", "myocardial ischemia",
                  "no location; ISC_ (non-specific ischemic) is nearest, but the challenge counts 2175 MIs among "
                  "PTB-XL records where ISC_ has 1275, so not one to one"),
    "251187003": ("AED", "atrial escape beat", "PTB-XL has no escape-beat statement"),
    "251238007": ("?", "not in the challenge's SNOMED tables",
                  "its meaning is not given with the data (Ningbo labels outside dx_mapping_*.csv), so it cannot "
                  "be mapped"),
    "251170000": ("BPAC", "blocked premature atrial contraction",
                  "a non-conducted PAC; PTB-XL's PAC does not say whether it conducts, so not equal"),
    "13640000": ("FB", "fusion beats", "PTB-XL has no fusion-beat statement"),
    "106068003": ("ARH", "atrial rhythm", "an ectopic atrial rhythm; PTB-XL has no such rhythm statement"),
    "413844008": ("CMI", "chronic myocardial ischemia", "PTB-XL does not code chronicity"),
    "251259000": ("HTV", "high T-voltage", "PTB-XL has low T (LOWT) but no high-T statement"),
}


def score(model: str, records: Path) -> tuple[dict, dict]:
    """One model's row for the table and its full report."""
    t0 = time.perf_counter()
    ev = evaluate_records(model, records, n_resamples=N_RESAMPLES, seed=SEED, alpha=ALPHA)
    r, src = ev.report, ev.source
    boot, cal, calls = r["bootstrap"], r["calibration"], r["at_thresholds"]
    row = {"model": model, "macro_auroc": r["macro_auroc"], "ci": [boot["low"], boot["high"]],
           "n_resamples_used": boot["n_resamples"] - boot["n_incomplete"], "n_records": r["n_records"],
           "n_statements_shared": r["n_labels"], "n_statements_scored": r["n_scored"],
           "not_scored_single_class": [e["label"] for e in r["excluded"]["labels"]],
           "unreadable": src["unreadable"]["count"], "unlabelled": src["unlabelled"]["count"],
           "not_judged": src["unscored"]["count"], "ece_mean": cal["ece_mean"], "brier_mean": cal["brier_mean"],
           "sample_f1": calls["sample_f1"] if calls else None,
           "called_per_record": calls["all"]["called_per_record"] if calls else None,
           "true_per_record": calls["all"]["true_per_record"] if calls else None,
           "per_label_auroc": {k: v["auroc"] for k, v in r["per_label"].items()},
           "seconds": time.perf_counter() - t0}
    print(f"[external] {model}: macro AUROC {row['macro_auroc']:.3f} ({row['ci'][0]:.3f}-{row['ci'][1]:.3f}) "
          f"on {row['n_records']} records, {row['n_statements_scored']} statements", flush=True)
    return row, ev.to_dict()


def unmapped_rows(source: dict) -> list[dict]:
    """The unmapped codes of the data (most frequent first) with the review's name and reason."""
    rows = []
    for c in source["unmapped_snomed"]["codes"]:
        abbreviation, name, why = UNMAPPED.get(c["code"], ("?", "not reviewed", "not reviewed"))
        rows.append({"code": c["code"], "n_records": c["n_records"], "abbreviation": abbreviation, "name": name,
                     "why": why})
    return rows


def markdown(result: dict) -> str:
    rows = result["models"]
    lines = ["# External validation: PhysioNet/CinC challenge records", "",
             f"{result['n_listed']} records in `{result['records']}` (CPSC, Georgia, Chapman/Ningbo; evaluation only: "
             "nothing trained, calibrated, tuned or chosen on them), scored as shipped by `bench/external.py` "
             "(`ecglens evaluate MODEL --records DIR`). Labels: the records' SNOMED-CT `#Dx` codes through "
             "`src/ecglens/data/snomed_to_scp.csv`; scored on the statements both vocabularies share, those with a "
             "positive and a negative record here. Interval: 90% percentile bootstrap, "
             f"{N_RESAMPLES} resamples (seed {SEED}), each redrawn until every scored statement has a positive and a "
             "negative record. ECE: 10 equal-width bins, mean over the shared statements. Calls at each model's "
             "stored thresholds.", "",
             "| model | macro AUROC | 90% CI | records | statements shared / scored | not judged | mean ECE "
             "| mean Brier | sample F1 | called / true per record |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        calls = "-" if r["called_per_record"] is None else f"{r['called_per_record']:.2f} / {r['true_per_record']:.2f}"
        f1 = "-" if r["sample_f1"] is None else f"{r['sample_f1']:.3f}"
        lines.append(f"| {r['model']} | {r['macro_auroc']:.3f} | {r['ci'][0]:.3f}-{r['ci'][1]:.3f} | {r['n_records']} "
                     f"| {r['n_statements_shared']} / {r['n_statements_scored']} | {r['not_judged']} "
                     f"| {r['ece_mean']:.3f} | {r['brier_mean']:.3f} | {f1} | {calls} |")
    first = rows[0]
    lines += ["", f"Unreadable records: {first['unreadable']}; records without `#Dx`: {first['unlabelled']}. "
              f"Shared statements without a positive record here (not scored): "
              f"{', '.join(first['not_scored_single_class']) or 'none'}.", "",
              "## Per-statement AUROC", "",
              "| statement | description | positives | " + " | ".join(r["model"] for r in rows) + " |",
              "|---|---|---|" + "---|" * len(rows)]
    for name, n_pos in result["positives"].items():
        if first["per_label_auroc"][name] is None:
            continue
        aucs = " | ".join(f"{r['per_label_auroc'][name]:.3f}" for r in rows)
        lines.append(f"| {name} | {describe(name)} | {n_pos} | {aucs} |")
    lines += ["", "## SNOMED codes that stay unmapped", "",
              f"{len(result['unmapped'])} codes in the data map to no PTB-XL statement; a record carrying one is still "
              "scored on its other codes (and counts as negative for every shared statement it does not carry).", "",
              "| code | challenge name | records | why unmapped |", "|---|---|---|---|"]
    for u in result["unmapped"]:
        lines.append(f"| {u['code']} | {u['abbreviation']}: {u['name']} | {u['n_records']} | {u['why']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=Path, default=RECORDS, help="challenge-format records (default: %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output folder")
    args = p.parse_args(argv)
    rows, reports = [], {}
    for model in MODELS:
        row, reports[model] = score(model, args.records)
        rows.append(row)
    source = reports[MODELS[0]]["source"]
    result = {"records": os.path.relpath(args.records, REPO), "n_listed": source["n_listed"], "models": rows,
              "positives": {k: v["n_positive"] for k, v in reports[MODELS[0]]["per_label"].items()},
              "unmapped": unmapped_rows(source), "reports": reports,
              "settings": {"n_resamples": N_RESAMPLES, "seed": SEED, "alpha": ALPHA},
              "machine": {"python": platform.python_version()}, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "external.json", result, indent=1)
    write_text_atomic(args.out / "external.md", markdown(result))
    print(f"wrote {args.out / 'external.json'} and {args.out / 'external.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
