"""Does unlabelled pretraining data from ``deepfake-ecg`` help the FactorECG VAE? With vs without.

``deepfake-ecg`` (PyPI; Thambawita et al. 2021) generates 10-s, 500-Hz, 8-lead
ECGs (I, II, V1-V6, in microvolts); the other four limb leads follow from I and
II. This script generates ``--n`` of them (seeded), cuts their FactorECG median
beats exactly as for real records, and trains the VAE on the real training-fold
beats plus the synthetic ones (same settings, same epochs, same validation on
real fold-9 beats) as the bench VAE trained without them. Both VAEs are then
scored the same way on real test-fold beats:

* reconstruction: MAE/RMSE in uV over all 12 leads (posterior mean decoded);
* factor models: the active-factor rule, standardisation and one logistic
  regression per statement fitted on real training beats, macro AUROC on the
  test fold for "all" and "superdiagnostic".

Synthetic ECGs are used only if both measures improve (the issue's rule); the
verdict is written with the numbers. Needs ``pip install deepfake-ecg`` (a
benchmark-only dependency, not a dependency of ecglens). Usage:
``python bench/factorecg_deepfake.py [--n 3000] [--without bench/work/runs/factorecg/all/seed0/model]``;
writes ``factorecg_deepfake.json`` and ``.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecglens.datasets import PTBXL  # noqa: E402
from ecglens.errors import ECGError  # noqa: E402
from ecglens.metrics import macro_auroc  # noqa: E402
from ecglens.models.factorecg import train as factor_train  # noqa: E402
from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat, load_beats  # noqa: E402
from ecglens.models.factorecg.factors import (FactorModelConfig, FactorModels, FactorStandardizer,  # noqa: E402
                                              active_factors)
from ecglens.models.factorecg.vae import encode_beats  # noqa: E402
from ecglens.models.qlst import load_vae_checkpoint  # noqa: E402

WORK = REPO / "bench" / "work" / "deepfake"
DEFAULT_WITHOUT = REPO / "bench" / "work" / "runs" / "factorecg" / "all" / "seed0" / "model"
RATE = 500.0


def synthetic_records(n: int, seed: int, batch: int = 16) -> np.ndarray:
    """(n, 12, 5000) mV records in standard lead order from the deepfake-ecg generator."""
    from importlib.resources import files

    from deepfakeecg import Generator

    net = Generator()
    state = torch.load(str(files("deepfakeecg") / "checkpoints" / "g_stat.pt"), map_location="cpu", weights_only=True)
    net.load_state_dict(state["stat_dict"])
    net.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch):
            noise = torch.rand(min(batch, n - start), 8, 5000, generator=g) * 2 - 1
            out.append((net(noise) * 6000).round().numpy() / 1000.0)  # the package writes integer uV
    eight = np.concatenate(out).astype(np.float32)
    i, ii = eight[:, 0], eight[:, 1]
    limb = np.stack([ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)  # III, aVR, aVL, aVF
    return np.concatenate([eight[:, :2], limb, eight[:, 2:]], axis=1)


def synthetic_beats(n: int, seed: int, settings: BeatSettings) -> tuple[np.ndarray, int]:
    """Median beats of ``n`` synthetic records (cached in the work dir) and how many gave none."""
    path = WORK / f"beats_n{n}_seed{seed}_{settings.beat_samples}.npz"
    if path.is_file():
        d = np.load(path)
        return d["beats"], int(d["skipped"])
    beats, skipped = [], 0
    for x in synthetic_records(n, seed):
        try:
            beats.append(ecg_factorbeat(x, RATE, settings)[0])
        except ECGError:
            skipped += 1
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(path, beats=np.stack(beats), skipped=skipped)
    return np.stack(beats), skipped


def score(vae, ds: PTBXL, settings: BeatSettings, cache: Path, threshold: float) -> dict:
    """Reconstruction on real test beats, and factor-model macro AUROC per label set (fit on real training beats)."""
    out = {}
    for label_set in ("all", "superdiagnostic"):
        train = load_beats(ds, tuple(range(1, 9)), settings, label_set, cache, None, False)
        test = load_beats(ds, (10,), settings, label_set, cache, None, False)
        mu, logvar = encode_beats(vae, train.beats)
        active = active_factors(mu, logvar, threshold=threshold)
        std = FactorStandardizer.fit(mu, active)
        models = FactorModels(list(train.label_names), list(std.indices), FactorModelConfig()).fit(
            std.transform(mu), train.y)
        auroc, n = macro_auroc(test.y, models.predict_proba(std.transform(encode_beats(vae, test.beats)[0])))
        out[label_set] = {"macro_auroc": auroc, "labels_scored": int(n), "n_active": int(active.n_active)}
        if label_set == "all":
            out["reconstruction_test"] = factor_train.vae_errors(vae, test.beats)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="synthetic records to generate (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--without", default=str(DEFAULT_WITHOUT), help="the FactorECG model trained without them")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    ap.add_argument("--cache", default=str(REPO / "bench" / "work" / "cache"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    without, _, beat = load_vae_checkpoint(args.without)
    settings = BeatSettings.from_dict(beat)
    tcfg = factor_train.FactorTrainConfig()
    ds = PTBXL(args.data, sampling_rate=100)
    cache = Path(args.cache)
    real = {name: load_beats(ds, folds, settings, "all", cache, None, False)
            for name, folds in (("train", tuple(range(1, 9))), ("val", (9,)))}
    synth, skipped = synthetic_beats(args.n, args.seed, settings)
    t_data = time.perf_counter() - t0
    mixed = {"train": SimpleNamespace(beats=np.concatenate([real["train"].beats, synth])), "val": real["val"]}
    vae_cfg = without.config  # the same architecture and objective; the lead scale is refitted on the data
    t1 = time.perf_counter()
    with_vae = factor_train.train_vae(mixed, vae_cfg, tcfg, WORK / f"vae_n{args.n}_seed{args.seed}", args.seed,
                                      resume=True, progress=False, base_config={"beat": beat})
    t_train = time.perf_counter() - t1
    result = {
        "synthetic": {"generated": args.n, "without_beat": skipped, "beats": int(len(synth)),
                      "real_training_beats": int(len(real["train"].beats)), "data_seconds": t_data},
        "train_seconds_with": t_train, "epochs_max": tcfg.epochs, "active_threshold": tcfg.active_threshold,
        "without": {"model": args.without, **score(without, ds, settings, cache, tcfg.active_threshold)},
        "with": score(with_vae, ds, settings, cache, tcfg.active_threshold),
    }
    w, o = result["with"], result["without"]
    better_recon = w["reconstruction_test"]["mae_uv"] < o["reconstruction_test"]["mae_uv"]
    better_auroc = all(w[s]["macro_auroc"] > o[s]["macro_auroc"] for s in ("all", "superdiagnostic"))
    result["use_synthetic"] = bool(better_recon and better_auroc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "factorecg_deepfake.json").write_text(json.dumps(result, indent=2))
    rows = [("without", o), (f"with {len(synth)} synthetic beats", w)]
    lines = ["# FactorECG VAE with and without deepfake-ecg synthetic beats", "",
             f"{args.n} synthetic 10-s ECGs generated (seed {args.seed}), {skipped} without a usable median beat; "
             f"the VAE trained on {len(real['train'].beats)} real training beats plus {len(synth)} synthetic ones, "
             "same settings and validation (real fold 9) as the one without. Test fold 10, real beats only; factor "
             "models refitted the same way for both. `python bench/factorecg_deepfake.py`.", "",
             "| VAE | test MAE (uV) | test RMSE (uV) | active factors | factor models AUROC, all | superdiagnostic |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['reconstruction_test']['mae_uv']:.1f} | {r['reconstruction_test']['rmse_uv']:.1f} "
                     f"| {r['all']['n_active']} | {r['all']['macro_auroc']:.3f} | {r['superdiagnostic']['macro_auroc']:.3f} |")
    lines += ["", "Verdict: " + ("synthetic beats improve both; use them." if result["use_synthetic"] else
                                 "synthetic beats do not improve both reconstruction and factor-model AUROC; "
                                 "the shipped VAE is trained without them.")]
    (out / "factorecg_deepfake.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
