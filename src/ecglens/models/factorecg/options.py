"""The options of ``ecglens train factorecg`` and ``ecglens train beat-blackbox`` (torch-free)."""
from __future__ import annotations

import argparse

from ..options import add_training_options


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_options(parser, out="run directory; the final model goes to RUN_DIR/model",
                         resume="continue the run in RUN_DIR, skipping finished stages", cache="beat",
                         max_records="use only the first N records of each split (quick checks)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: 100 for the VAE, 60 for the black box)")
    parser.add_argument("--beat-rate", type=int, default=100, choices=(100, 500),
                        help="median-beat grid of the VAE in Hz (default 100: 120 samples per 1.2-s beat)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train factorecg``."""
    _common_arguments(parser)
    parser.add_argument("--active-threshold", type=float,
                        help="a latent dimension is a factor when its mean KL exceeds this (nats; default: the "
                             "training recipe's, FactorTrainConfig.active_threshold)")
    parser.add_argument("--vae-from", metavar="DIR",
                        help="reuse a trained VAE (a run's vae/model) instead of training one, e.g. for another "
                             "label set")


def add_blackbox_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ecglens train beat-blackbox``."""
    _common_arguments(parser)
