"""qLST (the paper's variant and ours) vs per-record latent optimisation on the PTB-XL test fold (fold 10).

Two traversal networks for the same VAE and classifier: ``ours`` (relaxed
proximity to the decoded original, three moves) and ``paper`` (the paper's
proximity term, measured from the real input beat, one move); see
``ecglens.models.qlst.config``. For each statement (default: the shipped qLST's
statements that one median beat can carry; ``statements.beyond_one_beat()``
ones are refused), each test record with a usable median beat gets
``--queries-per-record`` queries (target q ~ U(0, 1), seeded), the same for
every method. Each network answers them in one pass; the per-record baseline
optimises dz with Adam (``--baseline-steps``) on that network's own objective.
Every method is scored under the same line-search policies: ``none`` and
``bisection`` (each method's step scaled along its own direction by 6 bisection
steps on the classifier's score; its time counted).

Reported per statement and overall: success rate (|score - q| <= 0.1),
proximity (RMSE of the explained beat to the decoded original and to the real
beat, uV), realism against the REAL test beats (median RMSE to the nearest real
beat of another record, and the leave-one-out 1-NN two-sample accuracy, 0.5 =
indistinguishable; the decoded originals are the VAE's own reference), the
prior log-density and speed (ms per explanation, batches of 256).

One command trains both networks (resuming what is done) and benchmarks them,
so it can be re-run after a new VAE:

    python bench/qlst.py --vae factorecg --classifier beat-blackbox --data ../shared/data/ptb-xl \\
        --cache bench/work/cache --train-run bench/work/qlst26

(``--model NAME=PATH`` benchmarks trained networks instead; ``--fidelity MODEL``
adds the re-synthesis fidelity of a 10-s classifier.) ``--export-beats FILE.npz``
writes the training, validation and test beats it reads and stops; ``--beats
FILE.npz`` reads them from there instead of PTB-XL (for a machine without the
data; the same training code, ``qlst.train.train_on_beats``). Writes ``qlst.json`` and
``qlst.md`` into ``--out`` (default bench/results).
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

from ecglens.datasets import PTBXL, TRAIN_FOLDS  # noqa: E402
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
    train_on_beats,
)
from ecglens.models.qlst.evaluate import realism_to_real  # noqa: E402
from ecglens.statements import beyond_one_beat  # noqa: E402

TEST_FOLD = 10
# The shipped qLST's statements (>= 20 positives on the test fold) less those one median beat cannot carry
# (AFIB, PVC, SR); ISCAL and STD_ also have >= 20 validation positives but were kept out to match it.
STATEMENTS = ("ABQRS", "ASMI", "IMI", "ISC_", "LAFB", "LVH", "NDT", "NORM", "NST_")
POLICIES = {"none": 0, "bisection": 6}
METRICS = ("success_rate", "mean_abs_error", "proximity_uv", "proximity_input_uv", "nn_real_uv", "nn_real_ratio",
           "nn_accuracy", "prior_log_density", "consistency_uv", "ms_per_explanation")


def _weighted(parts: list[dict], variant: str, method: str, policy: str) -> dict:
    rows = [p["variants"][variant][method][policy] for p in parts]
    n = np.array([r["queries"] for r in rows], dtype=np.float64)
    return {m: float(np.sum(n * [r[m] for r in rows]) / n.sum()) for m in METRICS} | {"queries": int(n.sum())}


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


def _models(args, statements, beats) -> tuple[dict[str, str], dict[str, float]]:
    """{variant: qLST checkpoint} from ``--model`` or trained into ``--train-run`` (resumed), and train seconds."""
    if args.model:
        return dict(m.split("=", 1) for m in args.model), {}
    paths, seconds = {}, {}
    for variant in ("ours", "paper"):
        t0 = time.perf_counter()
        out = Path(args.train_run) / variant
        if beats is None:
            path = train_from_paths(args.vae, args.classifier, args.data, out, statements, args.epochs, args.seed,
                                    resume=True, cache_dir=args.cache, progress=False, variant=variant)
        else:
            path = train_on_beats(args.vae, args.classifier, (beats["train_beats"], beats["train_rr"]),
                                  (beats["val_beats"], beats["val_rr"]), out, statements, args.epochs, args.seed,
                                  resume=True, progress=False, variant=variant, data={"beats": str(args.beats)})
        paths[variant], seconds[variant] = str(path), time.perf_counter() - t0
    return paths, seconds


def _splits(args, settings: BeatSettings, label_set: str):
    """The test split (beats, rr, y, label names, skipped count) and, to export, the training and validation beats."""
    if args.beats:
        b = np.load(args.beats, allow_pickle=False)
        return {k: b[k] for k in b.files}
    ds = PTBXL(args.data, sampling_rate=100)
    test = load_beats(ds, (TEST_FOLD,), settings, label_set, args.cache, args.max_records, progress=False)
    out = {"test_beats": test.beats, "test_rr": test.rr, "test_y": test.y, "label_names": np.array(test.label_names),
           "test_skipped": np.array(len(test.skipped))}
    if args.export_beats:
        for name, folds in (("train", TRAIN_FOLDS), ("val", (9,))):
            s = load_beats(ds, folds, settings, None, args.cache, args.max_records, progress=False)
            out[f"{name}_beats"], out[f"{name}_rr"] = s.beats, s.rr
    return out


def _row(name: str, r: dict) -> str:
    return (f"| {name} | {r['success_rate']:.3f} | {r['mean_abs_error']:.3f} | {r['proximity_uv']:.0f} | "
            f"{r['proximity_input_uv']:.0f} | {r['nn_real_uv']:.0f} ({r['nn_real_ratio']:.2f}) | "
            f"{r['nn_accuracy']:.2f} | {r['prior_log_density']:.1f} | {r['ms_per_explanation']:.2f} |")


HEADER = ["| method | success | MAE | proximity to decoded (uV) | proximity to input (uV) | nearest real beat, uV "
          "(x real-real) | 1-NN two-sample acc. | log p(z) | ms/expl. |", "|---|---|---|---|---|---|---|---|---|"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", required=True)
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--data")
    ap.add_argument("--model", action="append", default=[], metavar="VARIANT=PATH",
                    help="a trained qLST per variant (repeatable); without it both are trained into --train-run")
    ap.add_argument("--train-run", default="bench/work/qlst26", help="where to train (default %(default)s)")
    ap.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    ap.add_argument("--statement", action="append", default=[])
    ap.add_argument("--queries-per-record", type=int, default=2)
    ap.add_argument("--baseline-steps", type=int, default=100)
    ap.add_argument("--baseline-lr", type=float, default=0.05)
    ap.add_argument("--max-records", type=int)
    ap.add_argument("--cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    ap.add_argument("--fidelity", action="append", default=[], metavar="MODEL",
                    help="a 10-s record classifier whose re-synthesis fidelity to measure (repeatable)")
    ap.add_argument("--min-positives", type=int, default=20, help="for --fidelity's summary")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--export-beats", metavar="NPZ", help="write the beats read from PTB-XL to NPZ and stop")
    ap.add_argument("--beats", metavar="NPZ", help="read the beats from NPZ (--export-beats) instead of --data")
    args = ap.parse_args()
    if not (args.data or args.beats):
        ap.error("--data or --beats is needed")
    torch.set_num_threads(args.threads)

    beyond = beyond_one_beat()
    refused = sorted(s for s in args.statement if s in beyond)
    wanted = [s for s in (args.statement or STATEMENTS) if s not in beyond]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae, vae_id, beat = load_vae_checkpoint(args.vae, device=device)
    adapter, clf = load_classifier_adapter(args.classifier, beat, device=device)
    settings = BeatSettings.from_dict(beat)
    label_set = clf.config.get("label_set") or "all"
    data = _splits(args, settings, label_set)
    if args.export_beats:
        np.savez(args.export_beats, **data)
        print(f"wrote {args.export_beats}")
        return 0
    paths, train_seconds = _models(args, wanted, data if args.beats else None)
    models = {v: load_qlst(p, vae=vae, classifier=adapter, device=device) for v, p in paths.items()}
    statements = [s for s in wanted if all(s in m.config.statements for m in models.values())]
    if not statements:
        raise ECGError(None, f"no statement of {wanted} is known to every qLST model")

    names = [str(n) for n in data["label_names"]]
    positives = {n: int(data["test_y"][:, j].sum()) for j, n in enumerate(names)}
    real = np.ascontiguousarray(data["test_beats"], dtype=np.float32)
    z = torch.from_numpy(encode_beats(vae, real)[0]).to(device)
    real_t = torch.from_numpy(real).to(device)
    with torch.no_grad():
        decoded = vae.decode(z).cpu().numpy()
    reference = {"decoded_originals": realism_to_real(decoded, np.arange(len(real)), real, args.seed)}
    peaks = None
    if isinstance(adapter, RecordClassifierAdapter):
        rr = np.asarray(data["test_rr"], dtype=np.float64)
        rr = np.where(np.isfinite(rr) & (rr > 0.2), rr, 60.0 / 70.0)
        peaks = regular_peaks(rr, adapter.n_samples, adapter.rate)

    rng = np.random.default_rng(args.seed)
    parts = []
    for s in statements:
        rows = np.repeat(np.arange(len(z)), args.queries_per_record)
        q = torch.from_numpy(rng.uniform(0, 1, len(rows)).astype(np.float32)).to(device)
        ctx = None if peaks is None else RecordContext(peaks[rows], adapter.n_samples)
        part = {"statement": s, "test_positives": positives.get(s), "variants": {}}
        for variant, model in models.items():
            idx = torch.full((len(rows),), model.statement_index(s), dtype=torch.long, device=device)
            res = evaluate_queries(model, z[rows], idx, q, context=ctx, inputs=real_t[rows], records=rows, real=real,
                                   baseline_steps=args.baseline_steps, baseline_lr=args.baseline_lr,
                                   line_search_steps=POLICIES)
            part["variants"][variant] = res
            print(f"{s} {variant}: success qLST {res['qlst']['none']['success_rate']:.3f}/"
                  f"{res['qlst']['bisection']['success_rate']:.3f} vs opt {res['optimize']['none']['success_rate']:.3f}/"
                  f"{res['optimize']['bisection']['success_rate']:.3f} (none/bisection)", flush=True)
        parts.append(part)

    overall = {v: {m: {p: _weighted(parts, v, m, p) for p in POLICIES} for m in ("qlst", "optimize")} for v in models}
    for v in models:
        overall[v]["speedup"] = {p: overall[v]["optimize"][p]["ms_per_explanation"]
                                 / overall[v]["qlst"][p]["ms_per_explanation"] for p in POLICIES}
    result = {
        "qlst_models": paths, "qlst_configs": {v: m.config.to_dict() for v, m in models.items()},
        "vae": vae_id, "classifier": adapter.identity, "label_set": label_set, "test_fold": TEST_FOLD,
        "records": int(len(z)), "skipped": int(data["test_skipped"]), "queries_per_record": args.queries_per_record,
        "statements_refused": sorted(set(refused) | {s for m in models.values() for s in m.config.statements
                                                     if s in beyond}),
        "baseline": {"steps": args.baseline_steps, "lr": args.baseline_lr, "optimizer": "adam"},
        "line_search_policies": POLICIES, "command": "python bench/qlst.py " + " ".join(sys.argv[1:]),
        "train_seconds": train_seconds, "realism_reference": reference, "overall": overall, "statements": parts,
        "machine": {"platform": platform.platform(), "device": device, "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    result["resynthesis_fidelity"] = [fidelity(m, PTBXL(args.data, sampling_rate=100), args.min_positives)
                                      for m in args.fidelity]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qlst.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "qlst.md").write_text(markdown(result, statements, models) + "\n")
    print(f"wrote {out / 'qlst.json'} and {out / 'qlst.md'}")
    return 0


def markdown(result: dict, statements: list[str], models: dict) -> str:
    """The report: overall table per policy, realism reference, per-statement table, fidelity."""
    ref = result["realism_reference"]["decoded_originals"]
    lines = ["# qLST (paper variant and ours) vs per-record latent optimisation", "",
             f"Test fold {result['test_fold']}: {result['records']} records ({result['skipped']} without a usable "
             f"beat), {result['queries_per_record']} queries per record and statement (q ~ U(0, 1), the same for "
             f"every method), {len(statements)} statements: {', '.join(statements)}. Classifier "
             f"`{result['classifier'].get('kind')}`; VAE `{result['vae'].get('kind')}` (sha256 "
             f"{result['vae'].get('sha256', '')[:12]}). Baseline: Adam on dz, {result['baseline']['steps']} steps, "
             f"lr {result['baseline']['lr']}, on the same objective as the network it is compared with. Device "
             f"{result['machine']['device']}, {result['machine']['threads']} thread(s) on a shared machine (times "
             "are indicative).", "",
             f"Command: `{result['command']}`", "",
             "Variants: " + "; ".join(f"`{v}` = {result['qlst_models'][v]} (proximity {c['proximity']} to the "
                                      f"{c['proximity_reference']} beat, w {c['w_proximity']:g}, {c['moves']} move(s); "
                                      f"trained {c['epochs']} epochs for {len(c['statements'])} statements)"
                                      for v, c in result["qlst_configs"].items()) + ".", "",
             "Line-search policies, applied alike to every method: `none` (the method's own step) and `bisection` "
             "(the step scaled along its own direction by 6 bisection steps on the classifier's score, time "
             "included). Realism is measured against the real test beats: the median RMSE from each explained beat "
             "to the nearest real beat of another record (in brackets: over the same for real beats among "
             f"themselves, {ref['real_nn_real_uv']:.0f} uV), and the leave-one-out 1-NN two-sample accuracy between "
             "explained and real beats (0.5: indistinguishable), neighbours from the same record excluded. The "
             f"VAE's decodings of the test beats themselves score {ref['nn_real_uv']:.0f} uV "
             f"({ref['nn_real_ratio']:.2f}) and 1-NN accuracy {ref['nn_accuracy']:.2f}."]
    lines += ["", "Not benchmarked: the statements one median beat cannot carry (`statements.beyond_one_beat()`: "
              "rhythm, ectopy, higher AV block; the earlier qLST's AFIB, PVC and SR among them), which qLST neither "
              "learns nor explains" + (f" (asked for: {', '.join(result['statements_refused'])})"
                                       if result["statements_refused"] else "") + "."]
    for policy in POLICIES:
        lines += ["", f"## All statements, line search: {policy}", "", *HEADER]
        for v in models:
            for m in ("qlst", "optimize"):
                lines.append(_row(f"{'qLST' if m == 'qlst' else 'optimisation'} ({v})", result["overall"][v][m][policy]))
        lines += ["", "Speed-up of qLST over optimisation: " + ", ".join(
            f"{v} {result['overall'][v]['speedup'][policy]:.0f}x" for v in models) + "."]
    lines += ["", "## Per statement (success none / bisection; proximity to input and 1-NN accuracy with bisection)",
              "", "| statement | method | success | proximity to input (uV) | 1-NN acc. |", "|---|---|---|---|---|"]
    for p in result["statements"]:
        for v in models:
            for m in ("qlst", "optimize"):
                r = p["variants"][v][m]
                lines.append(f"| {p['statement']} | {m} ({v}) | {r['none']['success_rate']:.3f} / "
                             f"{r['bisection']['success_rate']:.3f} | {r['bisection']['proximity_input_uv']:.0f} | "
                             f"{r['bisection']['nn_accuracy']:.2f} |")
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
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
