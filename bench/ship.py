"""Copy the benchmark's models into the package as its pretrained models (``src/ecglens/pretrained/<name>``).

The shipped models are the very ones the benchmark table reports: trained on
folds 1-8 and validated on fold 9 by ``bench/run.py`` (and ``bench/qlst.py``
for the traversal network). A qLST checkpoint names the VAE and classifier it
was trained with; here those names become the shipped models' names, which
``resolve_checkpoint`` finds inside the package, and the weights' SHA-256 it
stores makes loading fail if either is ever replaced without retraining it.

Every shipped classifier is then calibrated on the validation fold (fold 9:
``ecglens.calibrate``; maps, thresholds and not-assessable statements go into
its ``config.json``, the weights stay as trained). ``--calibrate-only``
re-fits that step on the models already shipped.

    python bench/ship.py                       # every model below whose run exists
    python bench/ship.py --only qlst           # one of them
    python bench/ship.py --calibrate-only      # re-fit the shipped classifiers' calibration
    python bench/ship.py --evaluation-only     # store the benchmark's numbers in the shipped configs

Each shipped config.json gets an ``evaluation`` section (test-fold and external macro AUROC from
``bench/results/shipped.json``, written by ``bench/shipped.py`` from the models as shipped, and
``external.json``; qLST's query success from ``qlst.json``),
which ``ecglens report`` shows as the model's provenance.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.pretrained import pretrained_root  # noqa: E402
from ecglens.training import weights_digest  # noqa: E402

RUNS = REPO / "bench" / "work" / "runs"
DATA = REPO.parent / "shared" / "data" / "ptb-xl"
CALIBRATION_FOLD = 9
# shipped name -> benchmark checkpoint
SOURCES = {
    "baseline": RUNS / "baseline" / "all" / "seed0" / "model",
    # ProtoECGNet on the baseline's body: `ecglens train protoecgnet --trunk baseline` with the package's recipe
    # (bench/protoecgnet_variants.py --variants loop-l1 --seeds 0), chosen on fold 9 and shipped by
    # bench/protoecgnet_trunk.py --ship (issue 25; bench/results/protoecgnet_trunk.md), then
    # bench/prototype_reference.py; bench/run.py's protoecgnet-trunk rows are the same recipe
    "protoecgnet": REPO / "bench" / "work" / "protoecgnet_variants" / "loop-l1" / "seed0" / "model",
    # bench/run.py --models factorecg --label-sets all --seeds 0: the factors and factor models (logistic regression
    # with rhythm features, C=0.1) on bench/run.py's FACTORECG_VAE (bench/vae_search.py train ... factorecg-vae3)
    "factorecg": RUNS / "factorecg" / "all" / "seed0" / "model",
    # bench/run.py --models beat-blackbox --label-sets all --seeds 0 (12-lead encoder, the new median beats)
    "beat-blackbox": RUNS / "beat-blackbox" / "all" / "seed0" / "model",
    # our variant, trained on the shipped VAE and beat black box (ship those two first) by: python bench/qlst.py
    # --vae factorecg --classifier beat-blackbox --data DATA --cache bench/work/cache --train-run bench/work/qlst-vae3
    # --fidelity baseline
    "qlst": REPO / "bench" / "work" / "qlst-vae3" / "ours" / "model",
}
MAX_BYTES = 30_000_000
RESULTS = REPO / "bench" / "results"
SHIPPED, EXTERNAL, QLST_RESULTS = RESULTS / "shipped.json", RESULTS / "external.json", RESULTS / "qlst.json"
KEEP = ("ATTRIBUTION.md",)  # files of the shipped directory that are not part of a checkpoint


def ship(name: str, source: Path) -> None:
    target = pretrained_root() / name
    kept = {f: (target / f).read_text() for f in KEEP if (target / f).is_file()}
    size = sum(f.stat().st_size for f in source.iterdir() if f.is_file())
    if size > MAX_BYTES:
        raise SystemExit(f"{source}: {size / 1e6:.1f} MB is over the {MAX_BYTES / 1e6:.0f} MB limit for shipped models")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for f, text in kept.items():
        (target / f).write_text(text)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("kind") == "qlst":
        for part in ("vae", "classifier"):
            ref = (source / config[part]["path"]).resolve()  # stored relative to the checkpoint, or absolute
            shipped = ref.name if ref.parent == pretrained_root().resolve() else next(
                (n for n, src in SOURCES.items() if src.resolve() == ref), None)
            if shipped is None or weights_digest(pretrained_root() / shipped) != config[part]["sha256"]:
                raise SystemExit(f"qLST's {part} {config[part]['path']} is not a shipped model with the same weights")
            config[part]["path"] = shipped
        config_path.write_text(json.dumps(config, indent=2))
    print(f"{name}: {source} -> {target} ({size / 1e6:.1f} MB)")


def calibrate_shipped(name: str, data: Path) -> None:
    """Fit the shipped classifier's calibration on the validation fold and store it in its config.json."""
    import tempfile

    from ecglens.api import calibrate, load_model

    target = pretrained_root() / name
    if not load_model(target).can_predict:
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = calibrate(target, data, Path(tmp) / name, fold=CALIBRATION_FOLD, cache_dir=REPO / "bench" / "work" / "cache")
        (target / "config.json").write_text((model.directory / "config.json").read_text())
    cal = model.loaded.calibration
    print(f"{name}: calibrated on fold {CALIBRATION_FOLD} ({cal.method}, {int(cal.assessable.sum())} of "
          f"{len(cal.labels)} statements assessable)")


def evaluation_section(name: str, config: dict) -> dict:
    """The shipped model's measured numbers, from the benchmark's results: test-fold macro AUROC (of the
    model as shipped, with its 90% bootstrap interval), external macro AUROC (challenge records) and, for qLST,
    the share of queries reached on the test fold. Empty where a result file does not list the model."""
    out: dict = {}
    if SHIPPED.is_file():
        row = next((r for r in json.loads(SHIPPED.read_text())["models"] if r["model"] == name), None)
        if row is not None:
            out["test"] = {"macro_auroc": row["macro_auroc"], "ci": row["ci"], "fold": row["fold"],
                           "labels_scored": row["labels_scored"], "source": str(SHIPPED.relative_to(REPO))}
    if EXTERNAL.is_file():
        ext = json.loads(EXTERNAL.read_text())
        row = next((m for m in ext["models"] if m["model"] == name), None)
        if row is not None:
            out["external"] = {"macro_auroc": row["macro_auroc"], "ci": row["ci"], "records": row["n_records"],
                               "statements_scored": row["n_statements_scored"], "data": ext.get("records"),
                               "source": str(EXTERNAL.relative_to(REPO))}
    if config.get("kind") == "qlst" and QLST_RESULTS.is_file():
        res = json.loads(QLST_RESULTS.read_text())
        policy = "bisection" if config.get("qlst", {}).get("calibration_steps", 0) else "none"
        overall = res["overall"]["ours"]["qlst"][policy]  # the shipped model is "ours", with its own line search
        out["qlst"] = {"success_rate": overall["success_rate"], "mean_abs_error": overall["mean_abs_error"],
                       "queries": overall["queries"], "line_search": policy, "fold": res.get("test_fold"),
                       "source": str(QLST_RESULTS.relative_to(REPO))}
    return out


def write_evaluation(name: str) -> None:
    """Store ``evaluation_section`` in the shipped model's config.json (the weights are not touched)."""
    path = pretrained_root() / name / "config.json"
    config = json.loads(path.read_text())
    config["evaluation"] = evaluation_section(name, config)
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"{name}: evaluation {', '.join(config['evaluation']) or 'none found'} stored in {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=sorted(SOURCES), help="ship only these (repeatable)")
    ap.add_argument("--calibrate-only", action="store_true", help="only re-fit the shipped classifiers' calibration")
    ap.add_argument("--evaluation-only", action="store_true",
                    help="only store the benchmark's test-fold and external numbers in the shipped configs")
    ap.add_argument("--data", type=Path, default=DATA, help="PTB-XL root for calibration (default ../shared/data/ptb-xl)")
    args = ap.parse_args()
    for name in args.only or list(SOURCES):  # qLST last: it checks the shipped VAE and classifier
        source = SOURCES[name]
        if args.evaluation_only:
            write_evaluation(name)
            continue
        if not args.calibrate_only:
            if not (source / "config.json").is_file():
                print(f"{name}: no run at {source}; left as shipped")
                continue
            ship(name, source)
        calibrate_shipped(name, args.data)
        write_evaluation(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
