"""The stronger FactorECG VAE: beats for the GPU option search, and the chosen option installed as a run.

``prepare``: the median beats (shipped beat settings' successor: ``BeatSettings()``,
sub-sample alignment on the record's grid) of the training folds 1-8 and the
validation fold 9, and ``--per-record`` individual beats of every training
record (``--send`` of them evenly spread go to the device, stored as their
difference from the record's median beat, which compresses better), through
the feature cache, into one compressed npz of int16 uV (``bench/device_vae.py``
reads it; the test fold is not in it; the device takes 64 MiB with the tree).

``install``: one option's weights from a ``bench/device_vae.py`` output folder
as a VAE checkpoint (``<run>/vae/model``, kind ``factorecg-vae``, loadable like
a trained run's ``vae/model`` and usable as ``train_factorecg(vae_from=...)``),
with the search's results (validation figures of every option) in its
training facts.

``train``: one option trained here (CPU) through the ``vae`` stage of
``models/factorecg/train.py`` (``train_vae``: the Trainer, early stopping and
the best epoch by the validation negative beta-ELBO) into ``<run>/vae``.

``report``: the device search's validation figures as
``bench/results/factorecg_vae_search.{json,md}``.

Usage::

    python bench/vae_search.py prepare [--data DIR] [--cache DIR] [--out .devdata/vae_beats.npz]
    python bench/vae_search.py install DEVICE_OUT OPTION [--run bench/work/runs/factorecg-vae2]
    python bench/vae_search.py train [--lead-mode 12] [--sigma-mode learned] [--beta 4] [--individual-beats 0]
                                     [--epochs 150] [--patience 10] [--run bench/work/runs/factorecg-vae2]
    python bench/vae_search.py report DEVICE_OUT ... [--runs RUN ...]
    python bench/vae_search.py report --runs RUN ...      # only the CPU runs' section
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SCALE_UV = 1000.0  # int16 units per mV (1 uV)


def prepare(args) -> int:
    from ecglens.datasets import PTBXL, TRAIN_FOLDS
    from ecglens.models.factorecg.data import BeatSettings, load_beats, load_individual_beats

    ds = PTBXL(args.data, sampling_rate=100)
    settings = BeatSettings()
    train = load_beats(ds, TRAIN_FOLDS, settings, cache_dir=args.cache, progress=False)
    val = load_beats(ds, (9,), settings, cache_dir=args.cache, progress=False)
    individual = load_individual_beats(ds, TRAIN_FOLDS, settings, args.per_record, args.cache, progress=False,
                                       ecg_ids=train.ecg_ids)
    individual = individual.reshape(len(train.ecg_ids), args.per_record, *train.beats.shape[1:])
    individual = individual[:, np.round(np.linspace(0, args.per_record - 1, args.send)).astype(np.int64)]

    def q(a):
        return np.clip(np.round(np.asarray(a) * SCALE_UV), -32767, 32767).astype(np.int16)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, train=q(train.beats), train_individual_residual=q(individual - train.beats[:, None]),
                        val=q(val.beats),
                        train_ids=train.ecg_ids, val_ids=val.ecg_ids, scale_uv=SCALE_UV,
                        beat=json.dumps(settings.to_dict()))
    print(f"{out}: {len(train.ecg_ids)} training records x {args.send} individual beats, "
          f"{len(val.ecg_ids)} validation; {out.stat().st_size / 2**20:.1f} MiB; skipped train "
          f"{len(train.skipped)}, val {len(val.skipped)}")
    return 0


def install(args) -> int:
    from safetensors.torch import load_file

    from ecglens.datasets import PTBXL, TRAIN_FOLDS
    from ecglens.models.factorecg.config import FactorVAEConfig
    from ecglens.models.factorecg.data import BeatSettings
    from ecglens.models.factorecg.vae import FactorVAE
    from ecglens.preprocess import Pipeline, Resample
    from ecglens.training import provenance, save_checkpoint

    device_out = Path(args.device_out)
    results = json.loads((device_out / "results.json").read_text())
    r = results["results"][args.option]
    vae = FactorVAE(FactorVAEConfig.from_dict(r["config"]))
    vae.load_state_dict(load_file(str(device_out / f"{args.option}.safetensors")))
    ds = PTBXL(args.data, sampling_rate=100)
    search = {n: {"best": v["best"], "epochs_run": v["epochs_run"], "epochs": v["epochs"],
                  "individual_beats": v["individual_beats"], "n_active_kl": v["n_active"],
                  "changes": {k: v["config"][k] for k in ("lead_mode", "sigma_mode", "beta")}}
              for n, v in results["results"].items()}
    training = provenance(0, ds.identity(), source_rate=ds.sampling_rate, folds=list(TRAIN_FOLDS), fold_val=9,
                          fold_test=10, trained_on="GPU (bench/device_vae.py)", option=args.option,
                          individual_beats=r["individual_beats"], epochs=r["epochs"], epochs_run=r["epochs_run"],
                          batch_size=r["batch_size"], best_epoch=r["best"]["epoch"], best_metric=r["best"]["val_loss"],
                          metric="val_loss", val=r["best"], kl_per_dim=r["kl_per_dim"], search=search,
                          n_train=r["n_train"], n_val=r["n_val"])
    config = {"beat": BeatSettings().to_dict(), "pipeline": Pipeline((Resample(float(ds.sampling_rate)),)).to_dict(),
              "kind": "factorecg-vae", "vae": vae.config.to_dict(), "training": training}
    target = Path(args.run) / "vae" / "model"
    save_checkpoint(target, vae, config)
    print(f"installed {args.option} at {target}")
    return 0


def train(args) -> int:
    import torch

    from ecglens.datasets import PTBXL, TRAIN_FOLDS
    from ecglens.models.factorecg.config import FactorVAEConfig
    from ecglens.models.factorecg.data import BeatSettings, load_beats, load_individual_beats
    from ecglens.models.factorecg.train import FactorTrainConfig, train_vae
    from ecglens.preprocess import Pipeline, Resample
    from ecglens.training import provenance

    torch.set_num_threads(1)
    ds = PTBXL(args.data, sampling_rate=args.sampling_rate)
    settings = BeatSettings(beat_rate=args.beat_rate)
    folds = tuple(args.train_folds or TRAIN_FOLDS)
    splits = {"train": load_beats(ds, folds, settings, cache_dir=args.cache, progress=False),
              "val": load_beats(ds, (9,), settings, cache_dir=args.cache, progress=False)}
    tcfg = FactorTrainConfig(epochs=args.epochs, individual_beats=args.individual_beats,
                             individual_target=args.individual_target, patience=args.patience or None)
    individual = load_individual_beats(ds, folds, settings, args.individual_beats, args.cache, progress=False,
                                       ecg_ids=splits["train"].ecg_ids) if args.individual_beats else None
    vae_config = FactorVAEConfig(lead_mode=args.lead_mode, sigma_mode=args.sigma_mode, beta=args.beta,
                                 beat_samples=settings.beat_samples, sampling_rate=settings.beat_rate,
                                 latent_dim=args.latent_dim, hidden_dim=args.hidden_dim,
                                 channels=tuple(args.channels), kernel_sizes=tuple(args.kernel_sizes))
    base = {"beat": settings.to_dict(), "pipeline": Pipeline((Resample(float(ds.sampling_rate)),)).to_dict(),
            "training": provenance(args.seed, ds.identity(), source_rate=ds.sampling_rate, folds=list(folds),
                                   fold_val=9, fold_test=10, train_config=tcfg.to_dict(),
                                   command="python bench/vae_search.py train " + " ".join(sys.argv[2:]))}
    train_vae(splits, vae_config, tcfg, args.run, seed=args.seed, resume=args.resume, progress=False,
              base_config=base, individual=individual)
    print(f"trained at {Path(args.run) / 'vae' / 'model'}")
    return 0


def _kept_vaes(runs: list[str], data: str, cache: str, split):
    """``(run, VAE, beats)`` of each run with a kept checkpoint: the (n, 12, m) median beats, in the run's own beat
    settings, of ``split(config)`` = ``(source rate, folds)`` of the run's config (None: the run is left out);
    beats loaded once per distinct setting."""
    from ecglens.datasets import PTBXL
    from ecglens.models.factorecg.data import BeatSettings, load_beats
    from ecglens.models.factorecg.train import _load_vae

    beats = {}
    for run in runs:
        model = Path(run) / "vae" / "model"
        if not (model / "config.json").is_file():
            continue
        config = json.loads((model / "config.json").read_text())
        where = split(config)
        if where is None:
            continue
        key = (BeatSettings.from_dict(config["beat"]), int(where[0]), tuple(where[1]))
        if key not in beats:
            beats[key] = load_beats(PTBXL(data, sampling_rate=key[1]), key[2], key[0], cache_dir=cache,
                                    progress=False).beats
        yield run, _load_vae(model), beats[key]


def training_median_mae(runs: list[str], data: str, cache: str) -> dict[str, float]:
    """MAE (uV) of each run's kept VAE on its training folds' median beats (runs without a checkpoint left out):
    beside the validation MAE it tells fitting from generalising."""
    from ecglens.datasets import TRAIN_FOLDS
    from ecglens.models.factorecg.train import vae_errors

    def split(config):
        return config["training"].get("source_rate", 100), config["training"].get("folds", TRAIN_FOLDS)

    return {run: vae_errors(vae, beats)["mae_uv"] for run, vae, beats in _kept_vaes(runs, data, cache, split)}


def fitted_latent_mae(runs: list[str], data: str, cache: str, steps: int = 100) -> dict[str, float]:
    """Validation MAE (uV) of each 100-Hz run's decoder when every fold-9 beat gets its best latent code: from the
    encoder's mean, ``steps`` Adam steps (lr 0.05) on the run's Gaussian likelihood plus the standard normal prior
    (a MAP code). What the encoder loses against it is the amortisation gap; what is left is the decoder's reach."""
    import torch

    from ecglens.models.factorecg.vae import encode_beats

    def split(config):
        per_lead = config["vae"].get("sigma_mode") != "per_sample"
        return (100, (9,)) if per_lead and config["training"].get("source_rate", 100) == 100 else None

    out = {}
    for run, vae, val in _kept_vaes(runs, data, cache, split):
        vae.requires_grad_(False)
        x = torch.from_numpy(val)
        xn, log_sigma = vae.adapter.to_network(x), vae.observation_log_sigma()
        z = torch.from_numpy(encode_beats(vae, val)[0]).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(steps):
            nll = (0.5 * ((xn - vae.decode_network(z)) * torch.exp(-log_sigma)) ** 2).flatten(1).sum(1)
            loss = (nll + 0.5 * (z ** 2).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out[run] = float((vae.decode(z) - x).abs().mean() * 1e3)
    return out


def noise_floor(data: str) -> list[str]:
    """How much of a validation median beat no model can predict: each fold-9 record's kept beats split into odd and
    even halves, half the MAE between the two halves' median beats (uV; for independent noise about the noise
    left in the whole record's median beat, somewhat more since a half holds half the beats)."""
    from ecglens.datasets import PTBXL
    from ecglens.io import read_ecg
    from ecglens.models.factorecg.data import BeatSettings, ecg_factorbeat_batch

    ds, half = PTBXL(data, sampling_rate=100), []
    signals = [read_ecg(ds.header_path(int(i)), sampling_rate=ds.sampling_rate).signal
               for i in ds.records.index[ds.records["fold"] == 9]]
    for shape in {s.shape for s in signals}:  # one vectorised batch per record length
        batch = np.stack([s for s in signals if s.shape == shape])
        for info in ecg_factorbeat_batch(batch, ds.sampling_rate, BeatSettings(), keep_beats=True)[1]:
            if isinstance(info, Exception) or len(info["beats"]) < 4:
                continue
            beats = info["beats"]
            half.append(np.abs(np.median(beats[0::2], 0) - np.median(beats[1::2], 0)).mean() * 1e3 / 2)
    return ["", f"Noise floor (`noise_floor`, fold 9, {len(half)} records with at least 4 kept beats): half the MAE "
                f"between the median beats of a record's odd and even beats is {np.mean(half):.1f} uV on average "
                f"(median record {np.median(half):.1f}): the validation MAE of every option below is well above it."]


def cpu_rows(runs: list[str], train_mae: dict[str, float], fitted_mae: dict[str, float]) -> list[str]:
    """The CPU runs (``train``): each one's option and its best epoch (validation negative beta-ELBO) on fold 9,
    with ``train_mae`` (``training_median_mae``) and ``fitted_mae`` (``fitted_latent_mae``)."""
    from ecglens.datasets import TRAIN_FOLDS

    if not runs:
        return []
    out = ["", "## Options trained on the CPU (`python bench/vae_search.py train`, one-cycle schedule over the planned epochs, "
           "early stopping after `patience` epochs without a better validation loss, none where it is empty; the best "
           "epoch is the one with the lowest validation loss, the negative beta-ELBO, and is the checkpoint kept). "
           "The last two columns: the kept VAE's MAE on the training folds' median beats, and on the validation "
           "beats when each gets its best latent code (`fitted_latent_mae`: 100 Adam steps from the encoder's mean "
           "on the likelihood plus the prior; 100-Hz runs with a per-lead sigma)", "",
           "| run | network (latent, widths, hidden) | leads | sigma | beta | individual beats per record (target) | "
           "patience | epochs run of planned | best epoch | val MAE | val RMSE | training MSE (network units) at the "
           "best epoch | val loss last / best epoch | val MAE at the last epoch | MAE on the training medians | val MAE, latent fitted per beat |",
           "|---|---|---|---|---:|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for run in runs:
        rows = [json.loads(line) for line in (Path(run) / "vae" / "train_log.jsonl").read_text().splitlines()]
        best = min(rows, key=lambda r: r["val_loss"])
        cfg_path = Path(run) / "vae" / "model" / "config.json"
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text())
            vae, tcfg = cfg["vae"], cfg["training"]["train_config"]
            planned, note = tcfg["epochs"], ""
        else:  # stopped by hand before its checkpoint was written
            vae = {"lead_mode": "12", "sigma_mode": "per_sample", "beta": 4.0}
            tcfg, planned, note = {"individual_beats": 0}, 150, " (stopped by hand)"
        network = f"{vae.get('latent_dim', 32)}, {tuple(vae.get('channels', (32, 64, 128, 128)))}, {vae.get('hidden_dim', 256)}"
        n_train = rows[0]["records"] // (1 + tcfg["individual_beats"])
        if vae.get("sampling_rate", 100.0) != 100.0:  # another beat grid, from the records at the source rate
            network += f"; {vae['sampling_rate']:g}-Hz beats of the {cfg['training']['source_rate']}-Hz records"
        if vae.get("sampling_rate", 100.0) != 100.0 or cfg["training"].get("folds", TRAIN_FOLDS) != list(TRAIN_FOLDS):
            network += f" ({n_train} training records, folds {cfg['training']['folds']})"
        individual = f"{tcfg['individual_beats']} ({tcfg.get('individual_target', 'self')})" if tcfg["individual_beats"] else "0"
        out.append(f"| {Path(run).name} | {network} | {vae['lead_mode']} | {vae['sigma_mode']} | {vae['beta']:g} | "
                   f"{individual} | {tcfg.get('patience', 10) or ''} | {len(rows)} of {planned}{note} | {best['epoch']} | "
                   f"{best['val_mae_uv']:.2f} | {best['val_rmse_uv']:.2f} | {best['train_mse']:.4f} | {rows[-1]['val_loss']:.1f} "
                   f"/ {best['val_loss']:.1f} | {rows[-1]['val_mae_uv']:.2f} | "
                   f"{f'{train_mae[run]:.2f}' if run in train_mae else ''} | "
                   f"{f'{fitted_mae[run]:.2f}' if run in fitted_mae else ''} |")
    return out


def report(args) -> int:
    if not args.device_out:  # only the CPU runs' section, the device search's part kept as written before
        md = Path(args.out) / "factorecg_vae_search.md"
        head = md.read_text().split("\nNoise floor (")[0].split("\n## Options trained on the CPU")[0]
        head = head.rstrip("\n").split("\n")
        rows = noise_floor(args.data) + cpu_rows(args.runs, training_median_mae(args.runs, args.data, args.cache),
                                                 fitted_latent_mae(args.runs, args.data, args.cache))
        md.write_text("\n".join(head + rows) + "\n")
        print("\n".join(rows))
        return 0
    rows, out = [], {}
    for folder in args.device_out:
        r = json.loads((Path(folder) / "results.json").read_text())
        for name, v in r["results"].items():
            out[f"{Path(folder).name}/{name}"] = {k: v[k] for k in v if k != "history"} | {
                "val_mae_uv_history": [h["val_mae_uv"] for h in v["history"]]}
            c = v["config"]
            rows.append(f"| {Path(folder).name} | {name} | {c['lead_mode']} | {c['sigma_mode']} | {c['beta']:g} | "
                        f"{v['individual_beats']} | {v['epochs_run']} of {v.get('epochs_planned', v['epochs'])} | "
                        f"{v['best']['epoch'] + 1} | {v['best']['val_mae_uv']:.1f} | {v['best']['val_rmse_uv']:.1f} |")
    results = Path(args.out)
    (results / "factorecg_vae_search.json").write_text(json.dumps(out, indent=1))
    (results / "factorecg_vae_search.md").write_text("\n".join([
        "# FactorECG VAE option search on the GPU machine (validation fold 9, median beats, uV)", "",
        "`bench/device_vae.py` (one process per option on one H200, all at once), folders as returned. "
        "The runs were cut by the time budget long before convergence (see the epochs column): these figures "
        "compare options at equal short schedules only. Run 1 stopped each option at its time limit mid-schedule; "
        "run 2 fitted a whole one-cycle schedule into the limit. A training step took 0.27 s (batch 128) to 0.54 s "
        "(batch 256) with 7 processes sharing the GPU in run 2 (12 in run 1, with torch's default CPU threads and a "
        "host sync per step: slower still), against about 0.2 s for one process on this workplace's shared CPU: the "
        "GPU machine gave no speed-up for this small network, so the chosen options were trained on the CPU "
        "(`python bench/vae_search.py train`, figures in `factorecg_reconstruction.md`).", "",
        "| run | option | leads | sigma | beta | individual beats per record | epochs run of planned | best epoch | "
        "val MAE | val RMSE |", "|---|---|---|---|---:|---:|---|---:|---:|---:|", *rows, *noise_floor(args.data),
        *cpu_rows(args.runs, training_median_mae(args.runs, args.data, args.cache),
                  fitted_latent_mae(args.runs, args.data, args.cache))]) + "\n")
    print("\n".join(rows))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    a.add_argument("--cache", default=str(REPO / "bench" / "work" / "cache"))
    a.add_argument("--per-record", type=int, default=8, help="individual beats per record in the cache")
    a.add_argument("--send", type=int, default=6, help="of them, in the npz")
    a.add_argument("--out", default=str(REPO / ".devdata" / "vae_beats.npz"))
    b = sub.add_parser("install")
    b.add_argument("device_out")
    b.add_argument("option")
    b.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    b.add_argument("--run", default=str(REPO / "bench" / "work" / "runs" / "factorecg-vae2"))
    c = sub.add_parser("train")
    c.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    c.add_argument("--cache", default=str(REPO / "bench" / "work" / "cache"))
    c.add_argument("--sampling-rate", type=int, default=100, choices=(100, 500),
                   help="PTB-XL records read (500: only the records that exist at 500 Hz)")
    c.add_argument("--beat-rate", type=float, default=100.0, help="the VAE's beat grid (Hz)")
    c.add_argument("--train-folds", type=int, nargs="+", help="train on these folds only (default 1-8; a learning "
                                                                 "curve)")
    c.add_argument("--lead-mode", default="12")
    c.add_argument("--sigma-mode", default="learned")
    c.add_argument("--beta", type=float, default=4.0)
    c.add_argument("--individual-beats", type=int, default=0)
    c.add_argument("--individual-target", default="self", choices=("self", "median"),
                   help="what an individual beat's decoding is compared with: itself or its record's median beat")
    c.add_argument("--latent-dim", type=int, default=32)
    c.add_argument("--hidden-dim", type=int, default=256)
    c.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 128], help="encoder widths (decoder reversed)")
    c.add_argument("--kernel-sizes", type=int, nargs="+", default=[7, 5, 5, 3])
    c.add_argument("--epochs", type=int, default=150)
    c.add_argument("--patience", type=int, default=10,
                   help="early stopping after this many epochs without a better validation loss; 0: none (the "
                        "one-cycle schedule's rising learning rate can stall the loss for 10 epochs long before "
                        "convergence: factorecg-vae3's first try stopped at epoch 35 of 150, best 25, val MAE 30.7)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--resume", action="store_true")
    c.add_argument("--run", default=str(REPO / "bench" / "work" / "runs" / "factorecg-vae2"))
    d = sub.add_parser("report")
    d.add_argument("device_out", nargs="*", help="without any: rewrite only the CPU runs' section (--runs)")
    d.add_argument("--out", default=str(REPO / "bench" / "results"))
    d.add_argument("--runs", nargs="*", default=[], help="CPU run directories (train) to list too")
    d.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ptb-xl"))
    d.add_argument("--cache", default=str(REPO / "bench" / "work" / "cache"))
    args = p.parse_args(argv)
    return {"prepare": prepare, "install": install, "train": train, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
