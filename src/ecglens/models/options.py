"""The options every ``ecglens train`` command shares, added by one function.

Torch-free, like every family's ``options.py``: ``ecglens train MODEL --help``
builds its parser without importing a model.
"""
from __future__ import annotations

import argparse

from ..datasets.codes import LABEL_SETS

PTBXL_HELP = "PTB-XL root (ptbxl_database.csv, records100/)"


def add_training_options(parser: argparse.ArgumentParser, *, out: str, resume: str, data: str = PTBXL_HELP,
                         cache: str = "signal", labels: bool = True, val_fold: bool = False,
                         max_records: str | None = None) -> None:
    """--data, --labels, --out, --seed, --resume, --cache, [--val-fold], [--max-records], --no-progress.

    ``out``, ``resume`` and ``data`` are the family's help texts; ``cache`` names what its cache holds;
    ``labels``/``val_fold`` add those options, ``max_records`` (its help) adds --max-records.
    """
    parser.add_argument("--data", required=True, metavar="DIR", help=data)
    if labels:
        parser.add_argument("--labels", default="all", choices=LABEL_SETS, help="label set (default all)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help=out)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--cache", metavar="DIR",
                        help=f"{cache} cache directory (default $ECGLENS_CACHE or ~/.cache/ecglens)")
    if val_fold:
        parser.add_argument("--val-fold", type=int, default=9,
                            help="validation fold (default 9); training uses folds 1-8 other than it")
    if max_records is not None:
        parser.add_argument("--max-records", type=int, metavar="N", help=max_records)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines are still logged)")
