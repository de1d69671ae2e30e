"""The options of ``ecglens train baseline`` (torch-free)."""
from __future__ import annotations

import argparse

from ..options import add_training_options

# The recipes of ``baseline.config.RECIPES`` (which needs torch).
RECIPE_NAMES = ("default", "ptbxl-benchmark")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train baseline``."""
    add_training_options(parser, out="run directory: last/, best/, train_log.jsonl; the final model goes to "
                                     "RUN_DIR/model", resume="continue the run in RUN_DIR from its last epoch",
                         val_fold=True)
    parser.add_argument("--recipe", default="default", choices=RECIPE_NAMES,
                        help="training recipe (default: ours; ptbxl-benchmark: Strodthoff et al. 2021)")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--patience", type=int, metavar="N",
                        help="early stopping: stop after N epochs without a better validation macro AUROC and keep "
                             "the best epoch (default: the recipe's; ours trains the whole schedule, final model)")
    parser.add_argument("--rate", type=int, default=100, choices=(100, 500),
                        help="PTB-XL source files (default 100 Hz)")
