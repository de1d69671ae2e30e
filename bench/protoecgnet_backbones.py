"""How far ProtoECGNet's backbones reach without prototypes (issue 25 diagnostic, fold 9 only).

ProtoECGNet's three branch backbones (the shipped architecture) pooled over time (and lead rows) and concatenated
into one linear layer over the 71 statements: a plain black box with exactly ProtoECGNet's feature extractors.
Trained on folds 1-8 with BCE (the recipe's positive weights), time-shift augmentation, AdamW one-cycle; the epoch
with the best fold-9 macro AUROC is kept. ``--init``: ``scratch`` (fresh weights, the recipe's seed) or ``start``
(the backbones of the dense network the shipped ProtoECGNet was fine-tuned from); ``--width``: every backbone's
channel widths times this (scratch only; is capacity the limit?); ``--crop-seconds``: train on random crops of
this length (the baseline's protocol) instead of whole records; fold 9 is always scored on whole records.

If the plain backbones reach the baseline's fold-9 AUROC, the gap lies in the prototype bottleneck and its
projection; if they stop where ProtoECGNet's network does before projection, the backbones themselves are the
limit and a stronger (pretrained) encoder is the way. Fold 10 is not read.

Usage: ``python bench/protoecgnet_backbones.py [--init scratch|start] [--width 1] [--epochs 30] [--lr 3e-3]
[--seed 0]``;
appends its row to ``bench/results/protoecgnet_backbones.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import protoecgnet_finetune as ft  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402

WORK = REPO / "bench" / "work" / "protoecgnet_backbones"


class PlainBackbones(nn.Module):
    """ProtoECGNet's branch backbones, each averaged over its latent map, into one linear layer."""

    def __init__(self, backbones: dict[str, nn.Module], n_classes: int):
        super().__init__()
        self.backbones = nn.ModuleDict(backbones)
        self.head = nn.Linear(sum(b.out_channels for b in backbones.values()), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [b(x).flatten(2).mean(-1) for b in self.backbones.values()]
        return self.head(torch.cat(pooled, dim=1))


def write_report(rows: list[dict], out: Path) -> None:
    """``protoecgnet_backbones.md`` from the result rows."""
    write_text_atomic(out / "protoecgnet_backbones.md", "\n".join([
        "# ProtoECGNet's backbones without prototypes (fold 9)", "",
        "`python bench/protoecgnet_backbones.py`: the shipped ProtoECGNet's three branch backbones, pooled and "
        "concatenated into one linear layer (a plain classifier), BCE on folds 1-8 with the recipe's batch, weight "
        "decay, positive weights and time shifts; the epoch with the best fold-9 macro AUROC kept. For comparison on "
        "fold 9: the baseline 0.922, the shipped ProtoECGNet 0.882, its network before projection 0.901 "
        "(`protoecgnet_finetune.md`). Fold 10 is not read.", "",
        "| init | width | training crop | seed | epochs | peak lr | best epoch | fold-9 macro AUROC | at the last "
        "epoch | parameters | wall s |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['init']} | x{r.get('width', 1.0):g} | {crop_text(r)} | {r['seed']} | {r['epochs']} | {r['lr']:g} | "
          f"{r['best_epoch']} | {r['val_auroc']:.3f} | {r['val_auroc_last']:.3f} | {r['parameters']} | {r['wall_s']} |"
          for r in rows]]) + "\n")


def crop_text(row: dict) -> str:
    """A result row's training crop in words."""
    return f"{row['crop_s']:g} s" if row.get("crop_s") else "whole record"


def main(argv=None) -> int:
    from ecglens.api import load_model
    from ecglens.metrics import macro_auroc
    from ecglens.models.protoecgnet.losses import classification_loss, pos_weight_from_labels
    from ecglens.models.protoecgnet.model import ProtoECGNet
    from ecglens.models.protoecgnet.recipe import ProtoTrainConfig
    from ecglens.training import RecordDataset, Stage, StageRun, Validation, seed_everything

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", choices=("scratch", "start"), default="scratch")
    ap.add_argument("--width", type=float, default=1.0, help="backbone widths times this (scratch only)")
    ap.add_argument("--crop-seconds", type=float, help="train on random crops this long (default: whole records)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ptb-xl")
    ap.add_argument("--start", type=Path, default=ft.START)
    ap.add_argument("--out", type=Path, default=ft.RESULTS)
    args = ap.parse_args(argv)

    if args.width != 1 and args.init != "scratch":
        raise SystemExit("--width needs --init scratch")
    torch.set_num_threads(1)
    t0 = time.time()
    clf = load_model("protoecgnet").loaded
    start, config, _ = ft.load_start(ft.HEAD, args.start)
    _, folds, labels = ft.load_folds(clf.pipeline, args.data)
    del folds["test"]
    recipe = ProtoTrainConfig.from_dict(config["recipe"])
    seed_everything(args.seed)
    wider = {n: replace(b, widths=tuple(int(round(w * args.width)) for w in b.widths))
             for n, b in start.config.branches.items()}
    source = start if args.init == "start" else ProtoECGNet(replace(start.config, branches=wider))
    model = PlainBackbones({n: source.branches[n].backbone for n in source.branch_names}, len(labels))
    cfg = start.config
    _, train_x, train_y = folds["train"]
    _, val_x, val_y = folds["val"]
    pos_weight = pos_weight_from_labels(train_y, cap=recipe.pos_weight_cap)

    def loss_fn(net, batch):
        x, y = batch
        loss = classification_loss(net(x), y, pos_weight)
        return loss, {"bce": loss.detach()}

    def outputs(net, batch):
        x, y = batch
        return {"logit": net(x), "target": y}

    def metric(a):
        return {"val_auroc": macro_auroc(a["target"], a["logit"])[0]}

    stage = Stage(f"plain-{args.init}", run=lambda _: {}, trains=lambda _: model, epochs=args.epochs, lr=args.lr,
                  select="best")
    name = args.init + (f"-width{args.width:g}" if args.width != 1 else "") + (
        f"-crop{args.crop_seconds:g}" if args.crop_seconds else "")
    run = StageRun(stage, WORK / f"{name}-seed{args.seed}", {}, False, args.seed, False, model)
    crop = cfg.n_samples if args.crop_seconds is None else int(round(args.crop_seconds * cfg.sampling_rate))
    result = run.fit(loss_fn, RecordDataset(train_x, train_y, cfg.sampling_rate, crop, train=True,
                                            max_shift=round(recipe.max_shift_s * cfg.sampling_rate)),
                     run.train_config(batch_size=recipe.batch_size, weight_decay=recipe.weight_decay),
                     checkpoint_config={"kind": "protoecgnet-plain-backbones"},
                     validation=Validation(RecordDataset(val_x, val_y, cfg.sampling_rate, cfg.n_samples, train=False),
                                           outputs, metric, name="val_auroc", mode="max"))
    history = [h["val_auroc"] for h in result.history]
    row = {"init": args.init, "width": args.width, "crop_s": args.crop_seconds, "seed": args.seed, "epochs": args.epochs, "lr": args.lr,
           "best_epoch": result.facts["best_epoch"], "val_auroc": max(history),
           "val_auroc_last": history[-1], "parameters": sum(p.numel() for p in model.parameters()),
           "wall_s": round(time.time() - t0)}
    path = args.out / "protoecgnet_backbones.json"
    rows = [r for r in (json.loads(path.read_text()) if path.is_file() else [])
            if (r["init"], r.get("width", 1.0), r.get("crop_s"), r["seed"])
            != (args.init, args.width, args.crop_seconds, args.seed)] + [row]
    write_json_atomic(path, rows)
    write_report(rows, args.out)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
