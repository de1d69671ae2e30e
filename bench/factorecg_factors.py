"""A FactorECG VAE's factors re-derived, and each description checked against its traversal.

For a VAE run (``--run``, default ``bench/work/runs/factorecg-vae2``): the
factors stage of ``models/factorecg/train.py`` (``compute_factors``: the
active-factor rule on the training posteriors, the standardiser, the
data-driven descriptions from Spearman correlations with ``ecg_measure``
properties of training beats, reconstruction error on the training and
validation folds; no test fold), the number of factors at other KL
thresholds beside the rule's, and ``factor_check.check_descriptions``: does
each factor's traversal (-2 to +2 SD around the mean latent, decoded and
measured) move its described properties the way the description says?
Training and validation folds only. Writes ``<out>/factorecg_<run>_factors.{json,md}`` (``<run>``: the run
directory's name less its ``factorecg-`` prefix, e.g. ``factorecg_vae3_factors.md``).

Usage: ``python bench/factorecg_factors.py [--run DIR] [--data DIR] [--cache DIR] [--out bench/results]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

THRESHOLDS = (0.1, 0.5, 1.0, 2.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=str(REPO / "bench" / "work" / "runs" / "factorecg-vae2"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    p.add_argument("--cache", default=str(REPO / "bench" / "work" / "cache"))
    p.add_argument("--spread-records", type=int, default=600)
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    import torch

    from ecglens.datasets import PTBXL, TRAIN_FOLDS
    from ecglens.models.factorecg.data import BeatSettings, load_beats
    from ecglens.models.factorecg.factor_check import check_descriptions
    from ecglens.models.factorecg.factors import FactorStandardizer
    from ecglens.models.factorecg.train import FactorTrainConfig, beat_properties, compute_factors
    from ecglens.models.qlst import load_vae_checkpoint

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    vae, identity, beat = load_vae_checkpoint(args.run)
    settings = BeatSettings.from_dict(beat)
    ds = PTBXL(args.data, sampling_rate=100)
    splits = {"train": load_beats(ds, TRAIN_FOLDS, settings, cache_dir=args.cache, progress=False),
              "val": load_beats(ds, (9,), settings, cache_dir=args.cache, progress=False)}
    tcfg = FactorTrainConfig()
    factors = compute_factors(vae, ds, splits, settings, tcfg, seed=0)
    kl = np.asarray(factors["active"]["kl_per_dim"])
    std = FactorStandardizer.from_dict(factors["standardizer"])
    rng = np.random.default_rng(1)
    pick = np.sort(rng.choice(len(splits["train"].beats), args.spread_records, replace=False))
    props, names = beat_properties(splits["train"].beats[pick], splits["train"].rr[pick], settings.beat_rate,
                                   settings.r_index)
    q75, q25 = np.nanpercentile(props, 75, axis=0), np.nanpercentile(props, 25, axis=0)
    spread = {n: float((a - b) / 1.349) for n, a, b in zip(names, q75, q25)}
    check = check_descriptions(vae, std, factors["associations"], settings, spread, beat_properties, names)
    judged = [k for k, v in check.items() if v["judged"]]
    result = {"run": args.run, "vae": identity, "n_active": len(std.indices), "rule": factors["active"]["rule"],
              "threshold": factors["active"]["threshold"],
              "active_at": {str(t): int(np.sum(kl > t)) for t in THRESHOLDS}, "kl_per_dim": kl.tolist(),
              "reconstruction": factors["reconstruction"], "descriptions": factors["descriptions"],
              "check": check, "passes": sum(check[k]["passes"] for k in judged), "judged": len(judged),
              "seconds": time.perf_counter() - t0}
    out = Path(args.out)
    stem = f"factorecg_{Path(args.run).name.removeprefix('factorecg-')}_factors"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    lines = ["# FactorECG VAE factors: re-derived, descriptions checked against traversals", "",
             f"VAE `{args.run}`. Active rule: mean KL to the prior over the training medians > "
             f"{result['threshold']:g} nats: **{result['n_active']} of {len(kl)}** factors (the paper kept 21). At "
             "other thresholds: " + ", ".join(f"> {t} nats: {n}" for t, n in result["active_at"].items()) + ". "
             f"Reconstruction (posterior mean, uV): training MAE {factors['reconstruction']['train']['mae_uv']:.1f}, "
             f"validation MAE {factors['reconstruction']['val']['mae_uv']:.1f}.", "",
             f"Descriptions whose first judged property moves the described way in the traversal: "
             f"**{result['passes']} of {result['judged']}** judged ({len(check) - len(judged)} describe only "
             "rate-dependent properties or nothing). A property agrees when the Spearman trend over the traversal "
             "(-2..+2 SD, 9 steps) has the description's sign with |trend| >= 0.8 and the change is at least 0.1 "
             "of the property's spread over training beats. `python bench/factorecg_factors.py --run " + args.run + "`.", "",
             "| factor | KL nats | description | traversal: property (trend, change) verdict | passes |",
             "|---:|---:|---|---|---|"]
    for key, desc in factors["descriptions"].items():
        c = check[key]
        cells = "; ".join(f"{x['property']} ({x.get('traversal_trend', float('nan')):+.2f}, "
                          f"{x['change'] if x.get('change') is not None else float('nan'):+.3g}) {x['verdict']}"
                          for x in c["checked"]) or "-"
        lines.append(f"| {key} | {kl[int(key)]:.2f} | {desc} | {cells} | "
                     f"{'yes' if c['passes'] else ('no' if c['judged'] else 'n/a')} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
