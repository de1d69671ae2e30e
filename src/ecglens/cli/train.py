"""``ecglens train MODEL ...``: train a model; each model family brings its own subcommand.

``TRAINERS`` maps a subcommand name to ``(add_arguments, run)`` from the model's
package (``models/<name>/train.py``); a new model family adds one entry.
Every trainer runs unchanged under ``torchrun --nproc_per_node N -m ecglens train ...``.
"""
from __future__ import annotations

import argparse
from typing import Callable

from ..models.baseline import train as baseline_train
from ..models.factorecg import train as factorecg_train
from ..models.protoecgnet import train as protoecgnet_train
from ..models.qlst import train as qlst_train

TRAINERS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "baseline": (baseline_train.add_arguments, baseline_train.run),
    "factorecg": (factorecg_train.add_arguments, factorecg_train.run),
    "beat-blackbox": (factorecg_train.add_blackbox_arguments, factorecg_train.run_blackbox),
    "protoecgnet": (protoecgnet_train.add_arguments, protoecgnet_train.run),
    "qlst": (qlst_train.add_arguments, qlst_train.run),
}


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (one subcommand per model family)",
                              description="Train a model on PTB-XL. Runs as one process or under torchrun "
                                          "(torchrun --nproc_per_node N -m ecglens train ...).")
    sub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, (add_arguments, run) in TRAINERS.items():
        sp = sub.add_parser(name, help=f"train the {name} model")
        add_arguments(sp)
        sp.set_defaults(func=run)
