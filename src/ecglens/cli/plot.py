"""``ecglens plot``: one record on ECG paper (25 mm/s, 10 mm/mV, calibration pulse) as PNG/PDF/SVG, any lead set."""
from __future__ import annotations

from pathlib import Path

from ..errors import ECGError
from . import COMMANDS
from .read import add_leads_argument

LAYOUTS = ("3x4", "12x1")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help=COMMANDS["plot"])
    p.add_argument("file", metavar="FILE", help="ECG file (.hea/.dat/.mat/.edf/.csv/.npy)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="figure to write: .png, .pdf or .svg")
    p.add_argument("--layout", choices=LAYOUTS, default="12x1",
                   help="12x1: one row per lead (any lead set) for the whole record; 3x4: clinical 2.5-s columns "
                        "plus a lead II rhythm strip (needs the 12 standard leads; missing limb leads are derived)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ", help="sampling rate in Hz (required for .csv/.npy)")
    p.add_argument("--title", default=None, help="title above the paper (default: the file name)")
    p.add_argument("--dpi", type=float, default=150, help="resolution of PNG output (the paper size is fixed in mm)")
    add_leads_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..viz import plot_ecg
    from .read import read_record

    out = Path(args.output)
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ECGError(out, f"unsupported figure type {out.suffix or '(no suffix)'!r}; use {', '.join(FIGURE_SUFFIXES)}")
    if args.dpi <= 0:
        raise ECGError(None, f"--dpi must be positive, got {args.dpi:g}")
    ecg = read_record(args.file, args.rate, leads=args.leads)
    plot_ecg(ecg, out, layout=args.layout, title=args.title, dpi=args.dpi)
    print(out)
    return 0
