"""``ecglens plot``: one record on ECG paper (25 mm/s, 10 mm/mV, calibration pulse) as PNG/PDF/SVG."""
from __future__ import annotations

from pathlib import Path

from ..errors import ECGError
from . import COMMANDS

LAYOUTS = ("3x4", "12x1")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help=COMMANDS["plot"])
    p.add_argument("file", metavar="FILE", help="ECG file (.hea/.dat/.mat/.edf/.csv/.npy)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="figure to write: .png, .pdf or .svg")
    p.add_argument("--layout", choices=LAYOUTS, default="12x1",
                   help="12x1: every lead for the whole record; 3x4: clinical 2.5-s columns plus a lead II rhythm strip")
    p.add_argument("--rate", type=float, default=None, metavar="HZ", help="sampling rate in Hz (required for .csv/.npy)")
    p.add_argument("--title", default=None, help="title above the paper (default: the file name)")
    p.add_argument("--dpi", type=float, default=150, help="resolution of PNG output (the paper size is fixed in mm)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import read_ecg
    from ..viz import plot_ecg
    from .read import RATELESS_SUFFIXES, attach_ptbxl_facts

    out = Path(args.output)
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ECGError(out, f"unsupported figure type {out.suffix or '(no suffix)'!r}; use {', '.join(FIGURE_SUFFIXES)}")
    if args.dpi <= 0:
        raise ECGError(None, f"--dpi must be positive, got {args.dpi:g}")
    if args.rate is None and Path(args.file).suffix.lower() in RATELESS_SUFFIXES:
        raise ECGError(args.file, f"{Path(args.file).suffix} files carry no sampling rate; pass --rate HZ")
    ecg = attach_ptbxl_facts(read_ecg(args.file, sampling_rate=args.rate), args.file)
    plot_ecg(ecg, out, layout=args.layout, title=args.title, dpi=args.dpi)
    print(out)
    return 0
