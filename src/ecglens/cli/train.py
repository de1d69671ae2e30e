"""``ecglens train MODEL ...``: train a model; each model family declares its own subcommands.

The subcommands come from the family registry (``models.registry``): each
family's ``TrainCommand`` names a torch-free ``add_arguments`` and a ``run``
that is imported only when the command runs, so ``--help`` needs no torch.
Every trainer runs unchanged under ``torchrun --nproc_per_node N -m ecglens train ...``.
"""
from __future__ import annotations

import argparse

from . import COMMANDS


def _runner(reference: str):
    """The run function a family names, imported when called."""
    def run(args: argparse.Namespace) -> int:
        from ..models.registry import resolve

        return resolve(reference)(args)
    return run


def register(subparsers) -> None:
    from ..models.registry import resolve, train_commands

    p = subparsers.add_parser("train", help=COMMANDS["train"],
                              description="Train a model on PTB-XL. Runs as one process or under torchrun "
                                          "(torchrun --nproc_per_node N -m ecglens train ...).")
    sub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, command in train_commands().items():
        sp = sub.add_parser(name, help=command.help)
        resolve(command.add_arguments)(sp)
        sp.set_defaults(func=_runner(command.run))
