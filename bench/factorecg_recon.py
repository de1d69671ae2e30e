"""FactorECG VAE reconstruction error in microvolts: test fold at 100 Hz, and the 500-Hz subset.

For a trained FactorECG model (``--model``, default the one ``bench/run.py``
trained for "all", seed 0):

* 100 Hz: every record of the validation and test folds with a usable median
  beat; the model's beat (``ecg_factorbeat`` of the 100-Hz record, the path
  used in production) against its decoding (posterior mean), over all 12 leads.
* 500-Hz subset: the records of folds 9 and 10 that also exist at 500 Hz.
  The input is still the 100-Hz record (what the model sees); the reference
  is the median beat of the 500-Hz record, compared (a) on the VAE's 100-Hz
  grid (``ecg_factorbeat`` of the 500-Hz record) and (b) on the 500-Hz grid
  (the decoded beat upsampled, against the 500-Hz median beat itself). The
  error then holds both the VAE's loss and what the 100-Hz recording lost.

MAE and RMSE are over all leads and samples of all beats (mV -> uV), with
the median per record beside them. Usage:
``python bench/factorecg_recon.py [--model DIR] [--data DIR] [--out bench/results]``;
writes ``factorecg_reconstruction.json`` and ``.md``.
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

from ecglens.beats import median_beat, resample_beat  # noqa: E402
from ecglens.datasets import PTBXL  # noqa: E402
from ecglens.errors import ECGError  # noqa: E402
from ecglens.models.factorecg.data import BeatSettings, record_beat  # noqa: E402
from ecglens.models.factorecg.train import beat_errors  # noqa: E402
from ecglens.models.factorecg.vae import decode_latents, encode_beats  # noqa: E402
from ecglens.models.qlst import load_vae_checkpoint  # noqa: E402

DEFAULT_MODEL = REPO / "bench" / "work" / "runs" / "factorecg" / "all" / "seed0" / "model"
FOLDS = (9, 10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    vae, vae_id, beat = load_vae_checkpoint(args.model)
    settings = BeatSettings.from_dict(beat)
    ds = PTBXL(args.data, sampling_rate=100)
    ds500 = PTBXL(args.data, sampling_rate=500)  # only the records that exist at 500 Hz
    result = {"model": args.model, "vae": {k: v for k, v in vae_id.items() if k != "path"}, "beat": beat,
              "latent_dim": vae.config.latent_dim, "folds": {}, "subset_500hz": {}}
    for fold in FOLDS:
        ids = [int(i) for i in ds.records.index[ds.records["fold"] == fold]]
        beats, beats_hi, grid_hi, hi_rate, skipped = [], [], [], None, []
        rows_hi = []
        for ecg_id in ids:
            try:
                b, _ = record_beat(ds.read(ecg_id), settings)
            except ECGError as exc:
                skipped.append([ecg_id, str(exc)])
                continue
            beats.append(b)
            if ecg_id in ds500.records.index:
                try:
                    e500 = ds500.read(ecg_id)
                    grid_hi.append(record_beat(e500, settings)[0])
                    hi, info = median_beat(e500, before=settings.before, after=settings.after,
                                           min_beats=settings.min_beats, corr_threshold=settings.corr_threshold)
                except ECGError as exc:
                    skipped.append([ecg_id, f"500 Hz: {exc}"])
                    continue
                beats_hi.append(hi)
                hi_rate = info["sampling_rate"]
                rows_hi.append(len(beats) - 1)
        beats = np.stack(beats)
        decoded = decode_latents(vae, encode_beats(vae, beats)[0])
        result["folds"][str(fold)] = {"records": len(ids), "skipped": skipped, **beat_errors(decoded, beats)}
        if rows_hi:
            up = resample_beat(decoded[rows_hi], settings.beat_rate, hi_rate)
            n = min(up.shape[-1], beats_hi[0].shape[-1])
            result["subset_500hz"][str(fold)] = {
                "records": len(rows_hi),
                "grid_100hz": beat_errors(decoded[rows_hi], np.stack(grid_hi)),
                "grid_500hz": beat_errors(up[..., :n], np.stack(beats_hi)[..., :n]),
                "input_beat_vs_500hz_beat_100hz_grid": beat_errors(beats[rows_hi], np.stack(grid_hi))}
        print(f"fold {fold}: {result['folds'][str(fold)]['n']} beats, {len(rows_hi)} at 500 Hz", flush=True)
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "factorecg_reconstruction.json").write_text(json.dumps(result, indent=2))
    lines = ["# FactorECG VAE reconstruction (uV)", "",
             f"Model `{args.model}` ({vae.config.latent_dim}-dim latent, beats {settings.beat_samples} samples at "
             f"{settings.beat_rate:g} Hz, cut from the record upsampled to {settings.extract_rate:g} Hz). Posterior "
             "mean decoded; all 12 leads. Pooled MAE/RMSE over every lead and sample; medians over records. "
             "`python bench/factorecg_recon.py`.", "",
             "| data | reference | records | MAE | RMSE | MAE (median record) | RMSE (median record) |",
             "|---|---|---:|---:|---:|---:|---:|"]

    def row(name, ref, e):
        return (f"| {name} | {ref} | {e['n']} | {e['mae_uv']:.1f} | {e['rmse_uv']:.1f} | "
                f"{e['mae_uv_median_record']:.1f} | {e['rmse_uv_median_record']:.1f} |")
    for fold, e in result["folds"].items():
        lines.append(row(f"fold {fold}, 100 Hz", "its own median beat", e))
    for fold, s in result["subset_500hz"].items():
        lines.append(row(f"fold {fold}, 500-Hz subset", "500-Hz beat on the 100-Hz grid", s["grid_100hz"]))
        lines.append(row(f"fold {fold}, 500-Hz subset", "500-Hz beat at 500 Hz", s["grid_500hz"]))
        lines.append(row(f"fold {fold}, 500-Hz subset", "(input beat itself vs 500-Hz beat, 100-Hz grid)",
                         s["input_beat_vs_500hz_beat_100hz_grid"]))
    lines += ["", "Records without a usable beat are listed in the JSON."]
    (out / "factorecg_reconstruction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
