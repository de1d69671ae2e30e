"""The ``ecglens`` command line: one module per subcommand, each exposing ``register(subparsers)``.

Only the subcommand asked for is imported and built, so ``ecglens --help`` and
``ecglens read FILE`` start without torch; ``COMMANDS`` holds every
subcommand's one-line help for the top-level listing.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import ECGError

COMMANDS = {
    "read": "summarise ECG files: leads, rate, duration, units, metadata, labels",
    "plot": "draw a record on ECG paper (PNG, PDF or SVG)",
    "data": "download, verify, describe and cache PTB-XL",
    "beat": "median beat of a record: beat quality and ECG measurements",
    "convert": "convert an ECG file (any readable format) to WFDB, EDF or CSV, chosen by the output suffix",
    "train": "train a model (one subcommand per model family)",
    "predict": "statement probabilities and calls for ECG files with a trained model",
    "predict-batch": "predict many files into resumable Parquet parts (local, Dask or Ray)",
    "evaluate": "score a model (or saved predictions): macro AUROC, Fmax, bootstrap interval",
    "calibrate": "fit a model's calibration, thresholds and assessable statements on the validation fold",
    "explain": "explain a model's output for one record (JSON + figures)",
    "report": "one self-contained HTML page per record: tracing, measurements, every model's statements and why",
    "serve": "a local viewer (127.0.0.1): upload or browse records, see their reports, review the prototypes",
    "prototypes": "draw a ProtoECGNet model's prototype gallery with a blank rating sheet for clinician review",
    "export": "export a classifier's network to ONNX (preprocessing, windows and calibration stay in ecglens)",
    "models": "list the shipped models and the model families",
    "demo": "run the main job on the bundled records with the shipped models",
}


def _requested(argv: list[str]) -> str | None:
    """The subcommand named on the command line (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the requested subcommand fully built and the others listed by name and help only."""
    requested = _requested(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ecglens", description="Interpretable 12-lead ECG classification.")
    parser.add_argument("--version", action="version", version=f"ecglens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if name == requested:
            importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ECGError as exc:
        print(f"ecglens: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader (e.g. ``| head``) went away: stop quietly, and keep Python's exit-time flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("ecglens: interrupted", file=sys.stderr)
        return 130
