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
* rsR' of the bundled CRBBB record (ecg_id 172, test fold): positive peaks in
  V1's QRS ([-80, +160] ms around R; at least 50 uV high and 50 uV prominent),
  counted at 500 Hz on the 500-Hz record's median beat, on that beat taken to
  the 100-Hz grid and back (can a 100-Hz beat carry it?), on the model's input
  beat (100-Hz record) and on its reconstruction, both upsampled to 500 Hz.

Several ``--model`` give one table with a model column; a VAE run's search
(validation figures of every option it tried, stored in its checkpoint by
``bench/vae_search.py install``) is listed too.

MAE and RMSE are over all leads and samples of all beats (mV -> uV), with
the median per record beside them. Usage:
``python bench/factorecg_recon.py [--model DIR ...] [--data DIR] [--out bench/results]``;
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
from ecglens.io.leads import STANDARD_LEADS  # noqa: E402
from ecglens.training import load_config  # noqa: E402
from ecglens.datasets import PTBXL  # noqa: E402
from ecglens.errors import ECGError  # noqa: E402
from ecglens.models.factorecg.data import BeatSettings, record_beat  # noqa: E402
from ecglens.models.factorecg.train import beat_errors  # noqa: E402
from ecglens.models.factorecg.vae import decode_latents, encode_beats  # noqa: E402
from ecglens.models.qlst import load_vae_checkpoint  # noqa: E402

DEFAULT_MODEL = REPO / "bench" / "work" / "runs" / "factorecg" / "all" / "seed0" / "model"
FOLDS = (9, 10)
CRBBB_ID = 172
QRS_MS = (-80, 160)
PEAK_MV = 0.05


def v1_peaks(beat: np.ndarray, rate: float, r_index: int) -> list[float]:
    """Heights (mV) of the positive peaks of V1's QRS of a (12, m) beat (module docstring)."""
    from scipy.signal import find_peaks

    v1 = beat[STANDARD_LEADS.index("V1")]
    lo, hi = (max(0, r_index + int(round(ms * rate / 1e3))) for ms in QRS_MS)
    seg = v1[lo:hi + 1]
    found, _ = find_peaks(np.r_[-np.inf, seg, -np.inf], height=PEAK_MV, prominence=PEAK_MV)
    return [round(float(seg[i - 1]), 3) for i in found]


def crbbb_check(vae, settings: BeatSettings, ds, ds500) -> dict:
    """V1 rsR' peaks of the CRBBB record at 500 Hz (module docstring)."""
    hi, info = median_beat(ds500.read(CRBBB_ID), before=settings.before, after=settings.after,
                           min_beats=settings.min_beats, corr_threshold=settings.corr_threshold)
    rate, r_hi = info["sampling_rate"], info["r_index"]
    beat, _ = record_beat(ds.read(CRBBB_ID), settings)
    decoded = decode_latents(vae, encode_beats(vae, beat[None])[0])[0]
    m = hi.shape[-1]

    def up(b):
        return resample_beat(b, settings.beat_rate, rate)[..., :m]
    return {"ecg_id": CRBBB_ID, "rate": rate, "peaks_mv": {
        "500-Hz beat": v1_peaks(hi, rate, r_hi),
        "500-Hz beat via the 100-Hz grid": v1_peaks(up(resample_beat(hi, rate, settings.beat_rate)), rate, r_hi),
        "input beat (100-Hz record)": v1_peaks(up(beat), rate, r_hi),
        "reconstruction": v1_peaks(up(decoded), rate, r_hi)}}


def search_rows(model: str) -> list[str]:
    """The option search stored in a VAE run's checkpoint (validation fold only), as table rows."""
    from ecglens.models.loading import resolve_checkpoint

    directory = Path(model)
    directory = directory / "vae" / "model" if (directory / "vae" / "model").is_dir() else resolve_checkpoint(directory)
    training = load_config(directory).get("training", {})
    rows = []
    for name, r in sorted(training.get("search", {}).items(), key=lambda kv: kv[1]["best"]["val_mae_uv"]):
        c = r["changes"]
        rows.append(f"| {name}{' (chosen)' if name == training.get('option') else ''} | {c['lead_mode']} | "
                    f"{c['sigma_mode']} | {c['beta']:g} | {r['individual_beats']} | {r['best']['epoch'] + 1} / "
                    f"{r['epochs_run']} of {r['epochs']} | {r['best']['val_mae_uv']:.1f} | "
                    f"{r['best']['val_rmse_uv']:.1f} | {r['n_active_kl']} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=[str(DEFAULT_MODEL)])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = PTBXL(args.data, sampling_rate=100)
    ds500 = PTBXL(args.data, sampling_rate=500)  # only the records that exist at 500 Hz
    results = [evaluate(model, ds, ds500) for model in args.model]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "factorecg_reconstruction.json").write_text(json.dumps(
        {"models": results, "seconds": time.perf_counter() - t0}, indent=2))
    text = report(results, args.model)
    (out / "factorecg_reconstruction.md").write_text(text)
    print(text)
    return 0


def evaluate(model: str, ds, ds500) -> dict:
    """Every figure of the module docstring for one model."""
    vae, vae_id, beat = load_vae_checkpoint(model)
    settings = BeatSettings.from_dict(beat)
    result = {"model": model, "vae": {k: v for k, v in vae_id.items() if k != "path"}, "beat": beat,
              "vae_config": vae.config.to_dict(), "latent_dim": vae.config.latent_dim, "folds": {},
              "subset_500hz": {}, "crbbb": crbbb_check(vae, settings, ds, ds500)}
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
        print(f"{model}: fold {fold}: {result['folds'][str(fold)]['n']} beats, {len(rows_hi)} at 500 Hz", flush=True)
    return result


def describe(r: dict) -> str:
    b, c = r["beat"], r["vae_config"]
    cut = (f"cut on the record's grid, aligned to R on the {b['extract_rate']:g}-Hz grid" if b.get("subsample")
           else f"cut from the record upsampled to {b['extract_rate']:g} Hz")
    return (f"`{r['model']}`: {c['latent_dim']}-dim latent, {c['lead_mode']} leads, sigma {c['sigma_mode']}, "
            f"beta {c['beta']:g}; beats {round((b['before'] + b['after']) * b['beat_rate'])} samples at "
            f"{b['beat_rate']:g} Hz, {cut}")


def report(results: list[dict], models: list[str]) -> str:
    lines = ["# FactorECG VAE reconstruction (uV)", "",
             "Posterior mean decoded; all 12 leads. Pooled MAE/RMSE over every lead and sample; medians over "
             "records. `python bench/factorecg_recon.py --model " + " ".join(models) + "`. Models:", ""]
    lines += [f"{k + 1}. {describe(r)}" for k, r in enumerate(results)]
    lines += ["", "| model | data | reference | records | MAE | RMSE | MAE (median record) | RMSE (median record) |",
              "|---|---|---|---:|---:|---:|---:|---:|"]

    def row(k, name, ref, e):
        return (f"| {k + 1} | {name} | {ref} | {e['n']} | {e['mae_uv']:.1f} | {e['rmse_uv']:.1f} | "
                f"{e['mae_uv_median_record']:.1f} | {e['rmse_uv_median_record']:.1f} |")
    for k, r in enumerate(results):
        for fold, e in r["folds"].items():
            lines.append(row(k, f"fold {fold}, 100 Hz", "its own median beat", e))
        for fold, s in r["subset_500hz"].items():
            lines.append(row(k, f"fold {fold}, 500-Hz subset", "500-Hz beat on the 100-Hz grid", s["grid_100hz"]))
            lines.append(row(k, f"fold {fold}, 500-Hz subset", "500-Hz beat at 500 Hz", s["grid_500hz"]))
            lines.append(row(k, f"fold {fold}, 500-Hz subset", "(input beat itself vs 500-Hz beat, 100-Hz grid)",
                             s["input_beat_vs_500hz_beat_100hz_grid"]))
    lines += ["", f"## rsR' of the CRBBB record {CRBBB_ID} (V1, positive QRS peaks at 500 Hz, mV)", "",
              "| model | beat | peaks | heights |", "|---|---|---:|---|"]
    for k, r in enumerate(results):
        for what, peaks in r["crbbb"]["peaks_mv"].items():
            lines.append(f"| {k + 1} | {what} | {len(peaks)} | {', '.join(f'{p:.3f}' for p in peaks)} |")
    for k, model in enumerate(models):
        rows = search_rows(model)
        if rows:
            lines += ["", f"## Option search of model {k + 1} (validation fold 9 only; median beats)", "",
                      "| option | leads | sigma | beta | individual beats per record | best epoch / run of planned | "
                      "val MAE | val RMSE | factors (KL > 0.1 nats) |", "|---|---|---|---:|---:|---|---:|---:|---:|"]
            lines += rows
    lines += ["", "Records without a usable beat are listed in the JSON."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
