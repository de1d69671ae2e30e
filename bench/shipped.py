"""The shipped classifiers as they are now, on the test fold: the numbers their configs carry.

``bench/run.py`` scores the models it trains; a shipped model can since have changed without a full
re-run (FactorECG's factor models were re-fitted by ``bench/factor_models.py --ship``; ProtoECGNet now
scores whole records by windows). This scores every shipped classifier through ``ecglens.evaluate`` on
PTB-XL fold 10 with the benchmark's bootstrap resamples (so its intervals match ``benchmark.md``) and
calls at the stored thresholds. The test fold is read for this table only; nothing is chosen on it.

    .venv/bin/python bench/shipped.py [--data DIR] [--out bench/results]

Writes ``shipped.json`` and ``shipped.md``; ``bench/ship.py --evaluation-only`` copies each model's row
into its ``config.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ptb-xl"
CACHE = REPO / "bench" / "work" / "cache"
BOOTSTRAP = REPO / "bench" / "work" / "bootstrap"
FOLD = 10


def score(model, data: Path) -> dict:
    from ecglens.scoring import evaluate

    name = model.directory.name
    label_set = model.loaded.config.get("label_set", "all")
    t0 = time.perf_counter()
    ev = evaluate(model, data, fold=FOLD, cache_dir=CACHE, bootstrap=BOOTSTRAP / f"fold{FOLD}_{label_set}_redrawn.npy")
    r = ev.report
    calls = r.get("at_thresholds") or {}
    return {"model": name, "label_set": label_set, "fold": FOLD, "macro_auroc": r["macro_auroc"],
            "ci": [r["bootstrap"]["low"], r["bootstrap"]["high"]], "labels_scored": r["n_scored"],
            "records": len(ev.records), "unscored": ev.source["unscored"]["count"],
            "sample_f1": calls.get("sample_f1"), "seconds": round(time.perf_counter() - t0, 1)}


def render(rows: list[dict]) -> str:
    lines = ["# Shipped classifiers on the test fold", "",
             f"Every shipped classifier as it is now, scored by `ecglens.evaluate` on PTB-XL fold {FOLD} (its own label "
             "set and preprocessing; 90% bootstrap interval over the benchmark's resamples; sample F1 of the calls at "
             "the stored thresholds). Written by `python bench/shipped.py`; the configs' `evaluation.test` comes "
             "from here.", "",
             "| model | label set | records | labels scored | macro AUROC | 90% CI | sample F1 at thresholds |",
             "|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        f1 = "-" if r["sample_f1"] is None else f"{r['sample_f1']:.3f}"
        lines.append(f"| {r['model']} | {r['label_set']} | {r['records']} | {r['labels_scored']} | "
                     f"{r['macro_auroc']:.3f} | {r['ci'][0]:.3f}-{r['ci'][1]:.3f} | {f1} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from ecglens.api import list_models, load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: PTB-XL not found")
    rows = []
    for name in list_models():
        model = load_model(name)
        if model.can_predict:
            rows.append(score(model, args.data))
            print(f"[shipped] {name}: {rows[-1]['macro_auroc']:.3f}", flush=True)
    write_json_atomic(args.out / "shipped.json", {"fold": FOLD, "load_average": os.getloadavg(), "models": rows},
                      indent=2)
    write_text_atomic(args.out / "shipped.md", render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
