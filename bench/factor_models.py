"""FactorECG's factor models: logistic regression vs gradient-boosted trees, with and without rhythm features.

On the shipped VAE's factors (posterior means of the median beats, standardised
with the shipped standardiser), per label set (``all``, ``superdiagnostic``):

1. every candidate (``LOGISTIC_GRID`` x ``GBT_GRID``, each with and without
   the rhythm features of ``ecglens.beats.rhythm``) is fitted on folds 1-8 and
   scored on fold 9 (macro AUROC); the best of each (form, features) pair is
   chosen on fold 9 alone;
2. the chosen ones are refitted with seeds 0-2 (the trees hold out a random
   10 % for early stopping; logistic regression has no randomness, so its
   three seeds agree) and read on fold 10 once, beside the rhythm statements'
   (``statements.beyond_one_beat``) macro AUROC before (the shipped factor
   models, the beat black box) and after;
3. ``--ship`` (instead of 1-2, reading no test fold) refits the model chosen
   for ``all`` in ``factor_models.json`` (the form and features with the best
   fold-9 AUROC) on folds 1-8 and writes it into the shipped FactorECG model,
   whose VAE weights file stays as shipped (then:
   ``python bench/ship.py --calibrate-only --only factorecg``).

    python bench/factor_models.py [--data DIR] [--cache DIR]
    python bench/factor_models.py --ship

Writes ``bench/results/factor_models.{json,md}``. The beat black box's
reference numbers are the benchmark's (``bench/results/benchmark.md``, fold 10).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from ecglens.datasets import PTBXL, TRAIN_FOLDS  # noqa: E402
from ecglens.metrics import macro_auroc  # noqa: E402
from ecglens.models.factorecg.data import load_beats, load_rhythm  # noqa: E402
from ecglens.models.factorecg.factors import FactorModelConfig  # noqa: E402
from ecglens.models.factorecg.train import fit_factor_models, write_factor_models  # noqa: E402
from ecglens.models.factorecg.vae import encode_beats  # noqa: E402
from ecglens.training import load_config  # noqa: E402
from ecglens.pretrained import pretrained_root  # noqa: E402
from ecglens.statements import beyond_one_beat  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ptb-xl"
CACHE = REPO / "bench" / "work" / "cache"
OUT = REPO / "bench" / "results"
LABEL_SETS = ("all", "superdiagnostic")
BENCH_RUNS = OUT / "runs"  # bench/run.py's per-job results: the beat black box's fold-10 macro AUROC per seed
SEEDS = (0, 1, 2)
LOGISTIC_GRID = [FactorModelConfig(C=c) for c in (0.03, 0.1, 0.3, 1.0)]
GBT_GRID = [FactorModelConfig(kind="gbt", gbt_max_iter=300, gbt_learning_rate=lr, gbt_max_leaf_nodes=leaves,
                              gbt_min_samples_leaf=20, gbt_l2=1.0, gbt_early_stopping=True)
            for lr, leaves in ((0.05, 7), (0.1, 15))]


def blackbox_test() -> dict:
    """The beat black box's fold-10 macro AUROC per label set (mean and SD over the seeds ``bench/run.py`` ran)."""
    out = {}
    for label_set in LABEL_SETS:
        runs = sorted(BENCH_RUNS.glob(f"beat-blackbox_{label_set}_seed*.json"))
        values = [json.loads(r.read_text())["macro_auroc"] for r in runs if not r.stem.count("_e")]
        if values:
            out[label_set] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                               "seeds": len(values)}
    return out


def _auroc(y, p, columns=None) -> tuple[float, int]:
    if columns is not None:
        y, p = y[:, columns], p[:, columns]
    return macro_auroc(y, p) if y.shape[1] else (float("nan"), 0)


def _inputs(clf, ds, label_set: str, cache) -> dict:
    """Factors, rhythm features and labels of the train/val/test folds."""
    out = {}
    for name, folds in (("train", tuple(TRAIN_FOLDS)), ("val", (9,)), ("test", (10,))):
        split = load_beats(ds, folds, clf.settings, label_set, cache, progress=False)
        rhythm = load_rhythm(ds, folds, split.ecg_ids, clf.settings, cache, progress=False)
        out[name] = {"beats": split.beats, "z": clf.standardizer.transform(encode_beats(clf.vae, split.beats)[0]),
                     "rhythm": rhythm, "y": split.y, "labels": list(split.label_names), "n": len(split.ecg_ids)}
    return out


def _blackbox_rhythm(data: dict, label_set: str, rhythm_cols) -> dict:
    """The shipped beat black box's rhythm-statement AUROC (only the ``all`` model is shipped)."""
    from ecglens.api import load_model

    if label_set != "all":
        return {}
    bb = load_model("beat-blackbox").loaded
    with bb.raw():
        return {fold: _auroc(data[fold]["y"], bb.predict_beats(data[fold]["beats"]), rhythm_cols)[0]
                for fold in ("val", "test")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--ship", action="store_true",
                    help="only write the 'all' factor models chosen in factor_models.json into the shipped model")
    ap.add_argument("--label-sets", nargs="+", default=list(LABEL_SETS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from ecglens.api import load_model

    shipped = load_model("factorecg").loaded
    ds = PTBXL(args.data, sampling_rate=100)
    if args.ship:
        return ship(shipped, ds, args.cache)
    results: dict = {"vae": str(pretrained_root() / "factorecg"), "label_sets": {}, "seeds": list(SEEDS),
                     "beat_blackbox_test": blackbox_test(),
                     "shipped_factor_models": {"kind": shipped.config["factor_models"]["config"]["kind"],
                                               "C": shipped.config["factor_models"]["config"]["C"],
                                               "rhythm": bool(shipped.config.get("rhythm"))}}
    for label_set in args.label_sets:
        t0 = time.time()
        data = _inputs(shipped, ds, label_set, args.cache)
        labels = data["train"]["labels"]
        rhythm_cols = [j for j, s in enumerate(labels) if s in beyond_one_beat()]
        y_train = data["train"]["y"]
        candidates = []
        for cfg in LOGISTIC_GRID + GBT_GRID:
            for rhythm in (False, True):
                t = time.time()
                models, scaler = fit_factor_models(data["train"]["z"], data["train"]["rhythm"] if rhythm else None,
                                                   y_train, labels, shipped.standardizer.indices, cfg)
                p = models.predict_proba(_join(data["val"], scaler))
                val, n = _auroc(data["val"]["y"], p)
                candidates.append({"config": cfg.to_dict(), "rhythm": rhythm, "val_auroc": val, "val_labels": n,
                                   "val_rhythm_auroc": _auroc(data["val"]["y"], p, rhythm_cols)[0],
                                   "fit_s": round(time.time() - t, 1)})
                print(f"{label_set} {cfg.kind} C={cfg.C} lr={cfg.gbt_learning_rate} rhythm={rhythm}: val {val:.4f} "
                      f"({time.time() - t:.0f} s)", flush=True)
        chosen = []
        for kind in ("logistic", "gbt"):
            for rhythm in (False, True):
                best = max((c for c in candidates if c["config"]["kind"] == kind and c["rhythm"] == rhythm),
                           key=lambda c: c["val_auroc"])
                runs = []
                for seed in SEEDS:
                    cfg = replace(FactorModelConfig.from_dict(best["config"]), random_state=seed)
                    models, scaler = fit_factor_models(data["train"]["z"], data["train"]["rhythm"] if rhythm else None,
                                                       y_train, labels, shipped.standardizer.indices, cfg)
                    row = {"seed": seed}
                    for fold in ("val", "test"):
                        p = models.predict_proba(_join(data[fold], scaler))
                        row[f"{fold}_auroc"], row[f"{fold}_labels"] = _auroc(data[fold]["y"], p)
                        row[f"{fold}_rhythm_auroc"] = _auroc(data[fold]["y"], p, rhythm_cols)[0]
                    runs.append(row)
                    if kind == "logistic":
                        break  # no randomness: every seed gives these numbers
                summary = {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if k != "seed"}
                summary.update({f"{k}_sd": float(np.std([r[k] for r in runs])) for k in ("val_auroc", "test_auroc")})
                chosen.append({"kind": kind, "rhythm": rhythm, "config": best["config"], "runs": runs, **summary})
        before = {}
        if label_set == shipped.config.get("label_set"):
            with shipped.raw():
                for fold in ("val", "test"):
                    p = shipped.predict_beats(data[fold]["beats"],
                                              data[fold]["rhythm"] if shipped.judges_rhythm else None)
                    before[fold] = {"auroc": _auroc(data[fold]["y"], p)[0],
                                    "rhythm_auroc": _auroc(data[fold]["y"], p, rhythm_cols)[0]}
        best_all = max(chosen, key=lambda c: c["val_auroc"])
        results["label_sets"][label_set] = {
            "n": {k: data[k]["n"] for k in data}, "rhythm_statements": [labels[j] for j in rhythm_cols],
            "candidates": candidates, "chosen": chosen, "shipped_before": before,
            "beat_blackbox_rhythm": _blackbox_rhythm(data, label_set, rhythm_cols),
            "best_on_val": {"kind": best_all["kind"], "rhythm": best_all["rhythm"]},
            "seconds": round(time.time() - t0, 1)}
        write_json_atomic(OUT / "factor_models.json", results, indent=1)
        write_text_atomic(OUT / "factor_models.md", report(results))
    return 0


def ship(shipped, ds, cache) -> int:
    """Refit the factor models chosen for ``all`` on folds 1-8 and write them into the shipped model."""
    results = json.loads((OUT / "factor_models.json").read_text())["label_sets"]["all"]
    best = next(c for c in results["chosen"] if (c["kind"], c["rhythm"]) == (results["best_on_val"]["kind"],
                                                                             results["best_on_val"]["rhythm"]))
    target = pretrained_root() / "factorecg"
    config = load_config(target)
    if config["label_set"] != "all":
        raise SystemExit(f"{target} is a {config['label_set']!r} model; these factor models are for 'all'")
    train = load_beats(ds, tuple(TRAIN_FOLDS), shipped.settings, "all", cache, progress=False)
    val = load_beats(ds, (9,), shipped.settings, "all", cache, progress=False)
    if list(train.label_names) != list(config["labels"]):
        raise SystemExit("the shipped model's statements differ from the label set's")
    rhythm = {name: load_rhythm(ds, folds, split.ecg_ids, shipped.settings, cache, progress=False) if best["rhythm"]
              else None for name, folds, split in (("train", tuple(TRAIN_FOLDS), train), ("val", (9,), val))}
    cfg = FactorModelConfig.from_dict(best["config"])
    z = {name: shipped.standardizer.transform(encode_beats(shipped.vae, split.beats)[0])
         for name, split in (("train", train), ("val", val))}
    models, scaler = fit_factor_models(z["train"], rhythm["train"], train.y, train.label_names,
                                       shipped.standardizer.indices, cfg)
    val_auroc, n_scored = _auroc(val.y, models.predict_proba(_join({"z": z["val"], "rhythm": rhythm["val"]}, scaler)))
    config.pop("calibration", None)  # refit by bench/ship.py --calibrate-only --only factorecg
    config.pop("path", None)
    config["training"] = {**config["training"], "n_train": len(train.ecg_ids), "factor_models": models.report(),
                          "val_macro_auroc": val_auroc, "val_labels_scored": n_scored,
                          "label_prevalence": dict(zip(train.label_names, (float(p) for p in models.prevalence))),
                          "train_config": {**config["training"]["train_config"], "factor_kind": cfg.kind,
                                           "factor_C": cfg.C, "factor_rhythm": scaler is not None},
                          "factor_models_from": "bench/factor_models.py --ship (settings chosen on fold 9)"}
    write_factor_models(target, config, models, scaler)
    print(f"shipped {cfg.kind} factor models (rhythm features: {scaler is not None}) into {target}; "
          f"fold-9 macro AUROC {val_auroc:.4f} over {n_scored} statements")
    return 0


def _join(part: dict, scaler) -> np.ndarray:
    return part["z"] if scaler is None else np.hstack([part["z"], scaler.transform(part["rhythm"])])


def report(results: dict) -> str:
    lines = ["# FactorECG factor models: logistic regression vs gradient-boosted trees, ± rhythm features", "",
             "Shipped VAE's factors (`src/ecglens/pretrained/factorecg`), trained on folds 1-8, each form's settings "
             "chosen on fold 9 (macro AUROC), fold 10 read once for this table. Rhythm features: "
             "`ecglens.beats.rhythm.RHYTHM_FEATURES` (heart rate, RR CV, RMSSD, pNN50, premature fraction, "
             "P amplitude, P consistency). Rhythm AUROC: macro AUROC over the label set's statements a median beat "
             "cannot carry (`statements.beyond_one_beat()`). Trees: mean ± SD over seeds "
             f"{results['seeds']} (early-stopping split); logistic regression has no randomness (one run). "
             "Beat black box (unchanged by this comparison): the benchmark's fold-10 numbers, mean ± SD over the "
             "seeds `bench/run.py` trained (`bench/results/runs/beat-blackbox_*.json`); its rhythm AUROC is the "
             "shipped one's (seed 0, `all`).", ""]
    shipped = results.get("shipped_factor_models", {"kind": "logistic", "C": None, "rhythm": False})
    for label_set, r in results["label_sets"].items():
        bbs = results["beat_blackbox_test"].get(label_set)
        bb = bbs["mean"] if isinstance(bbs, dict) else bbs
        lines += [f"## {label_set}", "",
                  f"Records: train {r['n']['train']}, val {r['n']['val']}, test {r['n']['test']}; rhythm statements: "
                  f"{', '.join(r['rhythm_statements']) or 'none'}.", "",
                  "| model | rhythm features | settings (chosen on fold 9) | val AUROC | test AUROC | test - black box "
                  "| val rhythm AUROC | test rhythm AUROC |", "|---|---|---|---|---|---|---|---|"]
        for c in r["chosen"]:
            cfg = c["config"]
            setting = f"C={cfg['C']}" if c["kind"] == "logistic" else \
                f"lr={cfg['gbt_learning_rate']}, leaves={cfg['gbt_max_leaf_nodes']}"
            sd = f" ± {c['test_auroc_sd']:.3f}" if c["kind"] == "gbt" else ""
            lines.append(f"| {c['kind']} | {'yes' if c['rhythm'] else 'no'} | {setting} | {c['val_auroc']:.3f} | "
                         f"{c['test_auroc']:.3f}{sd} | {c['test_auroc'] - bb:+.3f} | {c['val_rhythm_auroc']:.3f} | "
                         f"{c['test_rhythm_auroc']:.3f} |")
        if r["shipped_before"]:
            b = r["shipped_before"]
            lines.append(f"| shipped ({shipped['kind']}, C={shipped['C']}) | {'yes' if shipped['rhythm'] else 'no'} | "
                         f"as shipped | {b['val']['auroc']:.3f} | "
                         f"{b['test']['auroc']:.3f} | {b['test']['auroc'] - bb:+.3f} | {b['val']['rhythm_auroc']:.3f} | "
                         f"{b['test']['rhythm_auroc']:.3f} |")
        if r["beat_blackbox_rhythm"]:
            b = r["beat_blackbox_rhythm"]
            sd = f" ± {bbs['sd']:.3f} ({bbs['seeds']} seeds)" if isinstance(bbs, dict) else ""
            lines.append(f"| beat black box (shipped) | no | as shipped | - | {bb:.3f}{sd} | 0 | {b['val']:.3f} | "
                         f"{b['test']:.3f} |")
        elif bbs is not None:
            sd = f" ± {bbs['sd']:.3f} ({bbs['seeds']} seeds)" if isinstance(bbs, dict) else ""
            lines.append(f"| beat black box (benchmark) | no | - | - | {bb:.3f}{sd} | 0 | - | - |")
        lines += ["", f"Best on fold 9: {r['best_on_val']['kind']}, rhythm features "
                      f"{'yes' if r['best_on_val']['rhythm'] else 'no'}.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
