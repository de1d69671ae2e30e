"""``ecglens report FILE... -o DIR``: one self-contained HTML page per record (and an index for several)."""
from __future__ import annotations

from . import COMMANDS


def add_page_arguments(p) -> None:
    """Options shared by ``report`` and ``serve``: the models and what a page shows."""
    from ..report.figures import GAIN_MM_MV, SPEED_MM_S

    p.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="models to report (names of shipped models, checkpoint or run directories; default: every "
                        "shipped model, see `ecglens models`)")
    p.add_argument("--speed", type=float, default=SPEED_MM_S, help=f"paper speed in mm/s (default {SPEED_MM_S:g})")
    p.add_argument("--gain", type=float, default=GAIN_MM_MV, help=f"gain in mm/mV (default {GAIN_MM_MV:g})")
    p.add_argument("--prototypes", type=int, default=3, help="prototypes shown per ProtoECGNet statement (default 3)")
    p.add_argument("--sweeps", type=int, default=2, help="qLST sweeps shown, most probable statements first (default 2)")


def page_options(args):
    from ..report import ReportOptions

    return ReportOptions(speed=args.speed, gain=args.gain, prototypes=args.prototypes, sweeps=args.sweeps)


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help=COMMANDS["report"],
                              description="Write one self-contained HTML page per record into DIR (figures inline, "
                                          "no network access; opens from disk): header with quality and "
                                          "measurements, the 12 leads on ECG paper, every model's calibrated "
                                          "statements, the ProtoECGNet, FactorECG and qLST explanations, and each "
                                          "model's provenance. Several records also give DIR/index.html.")
    p.add_argument("files", nargs="+", metavar="FILE", help="records in any readable format (or directories of them)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory (nothing is written elsewhere)")
    p.add_argument("--pdf", action="store_true", help="also print each page to PDF through headless Chromium")
    p.add_argument("--rate", type=float, help="sampling rate, needed for .csv/.npy")
    p.add_argument("--units", choices=("uV", "mV", "V"), default=None, help="unit of .csv/.npy values (default mV)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_page_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import find_records
    from ..report import Reporter, write_reports

    paths = [r for f in args.files for r in find_records(f)]
    if not paths:
        from ..errors import ECGError

        raise ECGError(args.files[0], "no readable record found")
    reporter = Reporter(args.models, page_options(args), workdir=args.out, progress=not args.no_progress)
    result = write_reports(paths, args.out, reporter, pdf=args.pdf, sampling_rate=args.rate, units=args.units,
                           progress=not args.no_progress)
    for row, page in zip(result["rows"], result["pages"]):
        print(f"{page}  ({row['bytes'] / 1e6:.2f} MB, {row['seconds']:.1f} s; called: {', '.join(row['called']) or '-'})")
    for pdf in result["pdfs"]:
        print(pdf)
    if result["index"]:
        print(f"index: {result['index']}")
    for s in result["skipped"]:
        print(f"skipped: {s['reason']}")
    return 1 if result["skipped"] else 0
