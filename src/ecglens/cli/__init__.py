"""The ``ecglens`` command line: one module per subcommand, each exposing ``register``."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import ECGError

# Subcommand modules (in ecglens.cli); each defines register(subparsers) which
# adds its parser and sets ``func`` (args -> exit code).
COMMANDS = ("read", "plot", "data", "beat", "train", "predict", "evaluate", "explain", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecglens", description="Interpretable 12-lead ECG classification.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ECGError as exc:
        print(f"ecglens: error: {exc}", file=sys.stderr)
        return 2
