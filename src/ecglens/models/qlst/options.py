"""The options of ``ecglens train qlst`` (torch-free)."""
from __future__ import annotations

import argparse

from ..options import add_training_options
from .config import VARIANTS, QLSTConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train qlst``."""
    parser.add_argument("--vae", required=True, metavar="MODEL", help="FactorECG model, its VAE stage or run directory")
    parser.add_argument("--classifier", required=True, metavar="MODEL", help="classifier checkpoint to explain")
    parser.add_argument("--statement", action="append", default=[],
                        help="statement to learn queries for (repeatable; default: every classifier output that "
                             "one median beat can carry; rhythm and beat-sequence statements are refused)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="ours",
                        help="ours (relaxed proximity to the decoded beat, three moves, step calibration) or paper "
                             "(the paper's proximity to the input beat, one move); default %(default)s")
    add_training_options(parser, data="PTB-XL root (training records' median beats)", labels=False,
                         out="run directory; the model goes to RUN_DIR/model", resume="continue the run in RUN_DIR",
                         cache="beat", max_records="use only the first N records of each split (quick checks)")
    parser.add_argument("--epochs", type=int, default=QLSTConfig.epochs, help="maximum epochs (default %(default)s)")
