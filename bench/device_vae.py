"""The FactorECG VAE option search on a GPU machine: one process per option, all at once, selection on fold 9.

Runs where the package's data dependencies (pandas, wfdb) are missing: only
``ecglens.models.factorecg.{vae,config,losses}`` and their light imports are
loaded (parent packages stubbed). Reads the beats ``bench/vae_search.py
prepare`` wrote (training medians, individual training beats, validation
medians; no test fold), trains every option of ``OPTIONS`` the way the
``vae`` stage of ``models/factorecg/train.py`` does (AdamW, one-cycle schedule,
KL warm-up per step, gradient clipping at 10, the best epoch by the
validation negative beta-ELBO at full beta) and writes, under ``--out``:
``results.json`` (per option: config, best epoch, validation MAE/RMSE in uV on
the 12 leads, KL per latent dimension on the training medians, history) and the
weights of the ``--keep`` options with the lowest validation MAE
(``<option>.safetensors``).

The schedule is one cycle (cosine warm-up over ``PCT_START`` of the steps from
lr/25 to lr, cosine decay to lr/25e4, as torch's ``OneCycleLR`` without the
momentum cycle) over as many of the planned epochs as fit the time budget:
a probe of a few steps on a throwaway copy times a step first. Each process
uses one CPU thread and the loss is taken from the pure loss functions, so no
step waits for the GPU (processes share it).

Usage: ``PYTHONPATH=src python bench/device_vae.py --data .devdata/vae_beats.npz --out $OUT [--budget 330]``
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"

# name: (FactorVAEConfig changes, individual beats per record used, epochs, batch size)
OPTIONS = {
    "base": ({}, 0, 800, 128),
    "leads12": ({"lead_mode": "12"}, 0, 800, 128),
    "persample": ({"sigma_mode": "per_sample"}, 0, 800, 128),
    "base-aug": ({}, 6, 200, 256),
    "leads12-aug": ({"lead_mode": "12"}, 6, 200, 256),
    "persample-aug": ({"sigma_mode": "per_sample"}, 6, 200, 256),
    "base-aug-beta2": ({"beta": 2.0}, 6, 200, 256),
}
LR, WEIGHT_DECAY, PCT_START, GRAD_CLIP, ACTIVE_KL = 2e-3, 1e-4, 0.3, 10.0, 0.1


def light_imports():
    """The VAE modules without the package's data dependencies: parent packages are stubbed."""
    sys.path.insert(0, str(SRC))
    for name, rel in (("ecglens", ""), ("ecglens.io", "io"), ("ecglens.models", "models"),
                      ("ecglens.models.factorecg", "models/factorecg")):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [str(SRC / "ecglens" / rel)]
            sys.modules[name] = mod
    from ecglens.models.factorecg import config, losses, vae
    return config, losses, vae


def one_cycle(step: int, total: int) -> float:
    """Learning-rate factor of the one-cycle schedule (module docstring) at ``step`` of ``total``."""
    warm = max(1, int(PCT_START * total))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / warm)) / 2
    t = min(1.0, (step - warm) / max(1, total - warm))
    return 1 / 25e4 + (1 - 1 / 25e4) * (1 + math.cos(math.pi * t)) / 2


def step_loss(model, losses, x, beta):
    """The negative beta-ELBO of a batch from the pure loss functions (no host sync)."""
    out = model(x)
    xn = model.adapter.to_network(x)
    return losses.gaussian_nll(out.recon_net, xn, model.observation_log_sigma(out)) + \
        beta * losses.kl_divergence(out.mu, out.logvar)[1]


def train_option(name: str, data_path: str, seed: int, budget_s: float, device: str, queue) -> None:
    """Train one option and put its result (and CPU weights) on ``queue``."""
    import copy

    import torch

    torch.set_num_threads(1)
    config, losses, vae_mod = light_imports()
    changes, per_record, epochs, batch_size = OPTIONS[name]
    d = np.load(data_path)
    scale = float(d["scale_uv"])
    train = d["train"].astype(np.float32) / scale
    extra = ((d["train_individual_residual"][:, :per_record].astype(np.float32) + d["train"][:, None]) / scale
             ).reshape(-1, *train.shape[1:]) if per_record else np.zeros((0,) + train.shape[1:], np.float32)
    val = d["val"].astype(np.float32) / scale
    torch.manual_seed(seed)
    np.random.seed(seed)
    cfg = replace(config.FactorVAEConfig(**changes), lead_scale=vae_mod.ecg_lead_scale(train))
    model = vae_mod.FactorVAE(cfg).to(device)
    x_train = torch.from_numpy(np.concatenate([train, extra])).to(device)
    x_val = torch.from_numpy(val).to(device)
    steps = math.ceil(len(x_train) / batch_size)
    start = time.time()
    probe = copy.deepcopy(model)
    popt = torch.optim.AdamW(probe.parameters(), lr=LR * 1e-3)
    for i in range(25):
        if i == 5:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.time()
        loss = step_loss(probe, losses, x_train[:batch_size], cfg.beta)
        popt.zero_grad(set_to_none=True)
        loss.backward()
        popt.step()
    float(loss.detach())
    per_step = (time.time() - t0) / 20
    del probe, popt
    planned = epochs
    epochs = max(1, min(planned, int((budget_s - (time.time() - start)) / (per_step * steps * 1.15 + 0.02))))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: one_cycle(k, epochs * steps))
    best, history, step = None, [], 0
    g = torch.Generator(device=device).manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), device=device, generator=g)
        for i in range(steps):
            beta = cfg.beta * losses.kl_warmup(step / steps, cfg.kl_warmup_epochs)
            loss = step_loss(model, losses, x_train[order[i * batch_size:(i + 1) * batch_size]], beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            opt.step()
            sched.step()
            step += 1
        model.eval()
        with torch.no_grad():
            out = model(x_val, sample=False)
            xn = model.adapter.to_network(x_val)
            ls = model.observation_log_sigma(out)
            nll = (0.5 * ((xn - out.recon_net) * torch.exp(-ls)) ** 2 + ls).expand_as(xn).flatten(1).sum(1)
            kl = losses.kl_elementwise(out.mu, out.logvar).sum(1)
            err = (out.recon - x_val) * 1e3
            row = {"epoch": epoch, "val_loss": float((nll + cfg.beta * kl).mean()), "val_kl": float(kl.mean()),
                   "val_mae_uv": float(err.abs().mean()), "val_rmse_uv": float(err.pow(2).mean().sqrt())}
        history.append(row)
        if best is None or row["val_loss"] < best[0]["val_loss"]:
            best = (row, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        if time.time() - start > budget_s + 30:
            break
    model.load_state_dict(best[1])
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(train).to(device), sample=False)
        kl_dims = losses.kl_elementwise(out.mu, out.logvar).mean(0).cpu().numpy()
    queue.put({"name": name, "config": cfg.to_dict(), "individual_beats": per_record, "epochs": epochs,
               "epochs_planned": planned, "seconds_per_step": per_step,
               "epochs_run": len(history), "batch_size": batch_size, "best": best[0], "seconds": time.time() - start,
               "kl_per_dim": kl_dims.tolist(), "n_active": int(np.sum(kl_dims > ACTIVE_KL)), "history": history,
               "n_train": int(len(x_train)), "n_val": int(len(x_val))})
    queue.put(("weights", name, {k: v.numpy() for k, v in best[1].items()}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--options", nargs="*", default=list(OPTIONS))
    p.add_argument("--budget", type=float, default=330.0, help="seconds of training per option at most")
    p.add_argument("--keep", type=int, default=3, help="options whose weights are written (lowest val MAE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    from safetensors.numpy import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=train_option, args=(n, args.data, args.seed, args.budget, args.device, queue))
             for n in args.options]
    for proc in procs:
        proc.start()
    results, weights = {}, {}
    while len(weights) < len(procs) and any(proc.is_alive() for proc in procs) or not queue.empty():
        try:
            item = queue.get(timeout=5)
        except Exception:  # queue.Empty: poll the processes again
            continue
        if isinstance(item, tuple):
            weights[item[1]] = item[2]
        else:
            results[item["name"]] = item
            print(f"{item['name']}: val MAE {item['best']['val_mae_uv']:.1f} uV at epoch {item['best']['epoch']} "
                  f"of {item['epochs_run']}, {item['n_active']} active, {item['seconds']:.0f} s", flush=True)
    for proc in procs:
        proc.join()
    ranked = sorted(results, key=lambda n: results[n]["best"]["val_mae_uv"])
    for name in ranked[:args.keep]:
        save_file(weights[name], str(out / f"{name}.safetensors"))
    (out / "results.json").write_text(json.dumps({"ranked": ranked, "results": results,
                                                  "failed": [n for n in args.options if n not in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
