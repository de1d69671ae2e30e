"""``ecglens train MODEL ...``: train a model; each model family declares its own subcommands.

The subcommands come from the family registry (``models.registry``): each
family's ``TrainCommand`` names a torch-free ``add_arguments`` and a ``run``
that is imported only when the command runs, so ``--help`` needs no torch.
When training finishes, the run's model (and its variants, e.g. ProtoECGNet's
``model-masked``) are calibrated on the validation fold (``ecglens.calibrate``)
unless the family declares otherwise or ``--no-calibrate`` is given.
Every trainer runs unchanged under ``torchrun --nproc_per_node N -m ecglens train ...``.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import COMMANDS


def _runner(command):
    """The run function a family names, imported when called, then the calibration of what it trained."""
    def run(args: argparse.Namespace) -> int:
        from ..models.registry import resolve

        code = resolve(command.run)(args)
        if code == 0 and command.calibrate and not args.no_calibrate and os.environ.get("RANK", "0") == "0":
            _calibrate(args)
        return code
    return run


def _calibrate(args: argparse.Namespace) -> None:
    """Fit the calibration of the run's model and its variants on the validation fold, in place."""
    from ..api import calibrate
    from ..models.loading import resolve_checkpoint

    model = resolve_checkpoint(args.out)
    for directory in [model, *sorted(model.parent.glob(f"{model.name}-*"))]:
        calibrated = calibrate(directory, args.data, directory, fold=getattr(args, "val_fold", 9),
                               rate=getattr(args, "rate", 100), cache_dir=args.cache, progress=not args.no_progress)
        cal = calibrated.loaded.calibration
        print(f"calibrated {directory} on fold {cal.facts['fold']}: {int(cal.assessable.sum())} of "
              f"{len(cal.labels)} statements assessable", file=sys.stderr)


def register(subparsers) -> None:
    from ..models.registry import resolve, train_commands

    p = subparsers.add_parser("train", help=COMMANDS["train"],
                              description="Train a model on PTB-XL. Runs as one process or under torchrun "
                                          "(torchrun --nproc_per_node N -m ecglens train ...).")
    sub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, command in train_commands().items():
        sp = sub.add_parser(name, help=command.help)
        resolve(command.add_arguments)(sp)
        if command.calibrate:
            sp.add_argument("--no-calibrate", action="store_true",
                            help="leave the trained model uncalibrated (default: calibrate it on the validation fold)")
        else:
            sp.set_defaults(no_calibrate=True)
        sp.set_defaults(func=_runner(command))
