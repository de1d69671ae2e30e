"""qLST vs per-record latent optimisation on the PTB-XL test fold (fold 10).

For every statement of the explained classifier with at least
``--min-positives`` positive test records (or the ``--statement`` list), each
test record with a usable median beat gets ``--queries-per-record`` queries
(statement, target score q ~ U(0, 1), seeded); both methods answer the same
queries with the same objective (``QLSTConfig`` of the qLST model): qLST in one
forward pass, the baseline with ``--baseline-steps`` Adam steps on dz. Reported
per statement and overall: success rate (|score - q| <= 0.1), proximity (RMSE
of the explained beat to the decoded original, uV), realism (prior
log-density of z + dz; VAE re-encoding consistency of explained beats vs real
test beats, uV) and speed (ms per explanation, batches of 256). Targets:
success >= 90 %, comparable proximity and realism, >= 10x faster.

Needs a trained FactorECG VAE and a classifier; a trained qLST model
(``--qlst``) or it trains one first into ``--train-run`` (``--epochs``).
``--fidelity MODEL`` (repeatable) adds, for a classifier that reads 10-s
records, how well its test-fold scores survive re-synthesis from the median
beat (Pearson r per statement between real and re-synthesised records).

Usage: ``python bench/qlst.py --vae RUN/vae/model --classifier MODEL --data DATA_DIR [--qlst MODEL]``
Writes ``qlst.json`` and ``qlst.md`` into ``--out`` (default bench/results).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.datasets import PTBXL  # noqa: E402
from ecglens.errors import ECGError  # noqa: E402
from ecglens.models import load_classifier  # noqa: E402
from ecglens.models.factorecg.data import BeatSettings, load_beats  # noqa: E402
from ecglens.models.factorecg.vae import encode_beats  # noqa: E402
from ecglens.models.qlst import (  # noqa: E402
    RecordClassifierAdapter,
    RecordContext,
    evaluate_queries,
    load_classifier_adapter,
    load_qlst,
    load_vae_checkpoint,
    regular_peaks,
    resynthesis_fidelity,
    train_from_paths,
)

TEST_FOLD = 10
METRICS = ("success_rate", "mean_abs_error", "proximity_uv", "prior_log_density", "consistency_uv",
           "ms_per_explanation")


def _weighted(parts: list[dict], method: str) -> dict:
    n = np.array([p[method]["queries"] for p in parts], dtype=np.float64)
    return {m: float(np.sum(n * [p[method][m] for p in parts]) / n.sum()) for m in METRICS} | {"queries": int(n.sum())}


def fidelity(model: str, ds: PTBXL, min_positives: int) -> dict:
    """Re-synthesis fidelity of a record classifier on the test fold, per statement and summarised."""
    clf = load_classifier(model)
    label_set = clf.config.get("label_set") or "all"
    labels = ds.labels(label_set, (TEST_FOLD,))
    t0 = time.perf_counter()
    res = resynthesis_fidelity(clf, [ds.read(int(i)) for i in labels.ecg_ids])
    positives = {n: int(labels.y[:, j].sum()) for j, n in enumerate(labels.names)}
    common = [n for n in clf.labels if positives.get(n, 0) >= min_positives and res["correlation"][n] is not None]
    r = [res["correlation"][n] for n in common]
    return {"model": model, "kind": clf.config.get("kind"), "n_records": res["n_records"],
            "skipped": len(res["skipped"]), "seconds": time.perf_counter() - t0,
            "statements": {n: {"r": res["correlation"][n], "mean_abs_difference": res["mean_abs_difference"][n],
                               "test_positives": positives.get(n)} for n in clf.labels},
            "common": {"min_positives": min_positives, "statements": common,
                       "median_r": float(np.median(r)) if r else None, "min_r": float(np.min(r)) if r else None}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", required=True)
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--qlst", help="trained qLST model; without it one is trained into --train-run")
    ap.add_argument("--train-run", default="runs/qlst-bench", help="run directory when training (default %(default)s)")
    ap.add_argument("--epochs", type=int, help="training epochs when training")
    ap.add_argument("--statement", action="append", default=[])
    ap.add_argument("--min-positives", type=int, default=20)
    ap.add_argument("--queries-per-record", type=int, default=2)
    ap.add_argument("--baseline-steps", type=int, default=100)
    ap.add_argument("--baseline-lr", type=float, default=0.05)
    ap.add_argument("--max-records", type=int)
    ap.add_argument("--cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fidelity", action="append", default=[], metavar="MODEL",
                    help="a 10-s record classifier whose re-synthesis fidelity to measure (repeatable)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae, vae_id, beat = load_vae_checkpoint(args.vae, device=device)
    adapter, clf = load_classifier_adapter(args.classifier, beat, device=device)
    settings = BeatSettings.from_dict(beat)
    ds = PTBXL(args.data, sampling_rate=100)
    label_set = clf.config.get("label_set") or "all"
    test = load_beats(ds, (TEST_FOLD,), settings, label_set, args.cache, args.max_records, progress=False)
    positives = {n: int(test.y[:, j].sum()) for j, n in enumerate(test.label_names)}
    wanted = args.statement or [s for s in clf.labels if positives.get(s, 0) >= args.min_positives]

    if args.qlst is None:
        t0 = time.perf_counter()
        path = train_from_paths(args.vae, args.classifier, args.data, args.train_run, wanted, args.epochs,
                                args.seed, cache_dir=args.cache, max_records=args.max_records, progress=False)
        train_seconds = time.perf_counter() - t0
    else:
        path, train_seconds = args.qlst, None
    qlst = load_qlst(path, vae=vae, classifier=adapter, device=device)
    statements = [s for s in wanted if s in qlst.config.statements]
    if not statements:
        raise ECGError(path, f"qLST knows {list(qlst.config.statements)}; none of {wanted} to benchmark")

    z = torch.from_numpy(encode_beats(vae, test.beats)[0]).to(device)
    real = torch.from_numpy(test.beats).to(device)
    peaks = None
    if isinstance(adapter, RecordClassifierAdapter):
        rr = np.where(np.isfinite(test.rr) & (test.rr > 0.2), test.rr, 60.0 / 70.0)
        peaks = regular_peaks(rr, adapter.n_samples, adapter.rate)
    rng = np.random.default_rng(args.seed)
    parts = []
    for s in statements:
        rows = np.repeat(np.arange(len(z)), args.queries_per_record)
        q = torch.from_numpy(rng.uniform(0, 1, len(rows)).astype(np.float32)).to(device)
        idx = torch.full((len(rows),), qlst.statement_index(s), dtype=torch.long, device=device)
        ctx = None if peaks is None else RecordContext(peaks[rows], adapter.n_samples)
        res = evaluate_queries(qlst, z[rows], idx, q, context=ctx, real_beats=real,
                               baseline_steps=args.baseline_steps, baseline_lr=args.baseline_lr)
        res.update({"statement": s, "test_positives": positives.get(s)})
        parts.append(res)
        print(f"{s}: success qLST {res['qlst']['success_rate']:.3f} vs opt {res['optimize']['success_rate']:.3f}, "
              f"{res['speedup']:.0f}x faster", flush=True)

    overall = {"qlst": _weighted(parts, "qlst"), "optimize": _weighted(parts, "optimize")}
    overall["speedup"] = overall["optimize"]["ms_per_explanation"] / overall["qlst"]["ms_per_explanation"]
    real_consistency = parts[0]["real_consistency_uv"]
    result = {
        "qlst_model": str(path), "vae": vae_id, "classifier": adapter.identity, "label_set": label_set,
        "test_fold": TEST_FOLD, "records": int(len(z)), "skipped": len(test.skipped),
        "queries_per_record": args.queries_per_record, "baseline": parts[0]["baseline"], "config": qlst.config.to_dict(),
        "command": "python bench/qlst.py " + " ".join(sys.argv[1:]),
        "train_seconds": train_seconds, "real_consistency_uv": real_consistency, "overall": overall,
        "statements": parts,
        "targets": {"success_rate": 0.9, "speedup": 10.0,
                    "met": {"success": overall["qlst"]["success_rate"] >= 0.9, "speedup": overall["speedup"] >= 10}},
        "machine": {"platform": platform.platform(), "device": device, "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    result["resynthesis_fidelity"] = [fidelity(m, ds, args.min_positives) for m in args.fidelity]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qlst.json").write_text(json.dumps(result, indent=2, default=str))
    lines = ["# qLST vs per-record latent optimisation", "",
             f"Test fold {TEST_FOLD}: {len(z)} records ({len(test.skipped)} without a usable beat), "
             f"{args.queries_per_record} queries per record and statement, q ~ U(0, 1); classifier "
             f"`{adapter.identity.get('kind')}` ({adapter.identity.get('path')}); baseline: Adam, "
             f"{args.baseline_steps} steps, lr {args.baseline_lr}; device {device}. Success: |score - q| <= "
             f"{qlst.config.tolerance}. Real test beats re-encode with {real_consistency:.0f} uV RMSE.", "",
             f"Command: `{result['command']}`", "",
             "| statement | method | success | MAE | proximity (uV) | log p(z) | consistency (uV) | ms/expl. |",
             "|---|---|---|---|---|---|---|---|"]
    for p in parts + [{"statement": "**all**", **overall}]:
        for m in ("qlst", "optimize"):
            r = p[m]
            lines.append(f"| {p['statement']} | {m} | {r['success_rate']:.3f} | {r['mean_abs_error']:.3f} | "
                         f"{r['proximity_uv']:.0f} | {r['prior_log_density']:.1f} | {r['consistency_uv']:.0f} | "
                         f"{r['ms_per_explanation']:.2f} |")
    lines += ["", f"Speed-up of qLST: {overall['speedup']:.0f}x. Targets: success >= 0.9 "
                  f"({'met' if result['targets']['met']['success'] else 'not met'}), >= 10x faster "
                  f"({'met' if result['targets']['met']['speedup'] else 'not met'})."]
    for f in result["resynthesis_fidelity"]:
        common = f["common"]
        lines += ["", f"## Re-synthesis fidelity: `{f['kind']}` ({f['model']})", "",
                  f"{f['n_records']} test records ({f['skipped']} without a usable beat). Pearson r between the "
                  f"classifier's scores on real records and on records re-synthesised from their own median beat; "
                  f"over the {len(common['statements'])} statements with >= {common['min_positives']} test positives: "
                  f"median r {common['median_r']:.2f}, lowest {common['min_r']:.2f}.", "",
                  "| statement | test positives | r | mean abs. score difference |", "|---|---|---|---|"]
        lines += [f"| {n} | {f['statements'][n]['test_positives']} | {f['statements'][n]['r']:.2f} | "
                  f"{f['statements'][n]['mean_abs_difference']:.3f} |" for n in common["statements"]]
    (out / "qlst.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'qlst.json'} and {out / 'qlst.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
