"""``ecglens convert``: one ECG file, in any format ecglens reads, written as WFDB, EDF or CSV."""
from __future__ import annotations

from pathlib import Path

from ..errors import ECGError
from . import COMMANDS


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help=COMMANDS["convert"],
                              description="Read an ECG in any supported format (WFDB, challenge .mat, EDF, CSV/NPY, "
                                          "GE MUSE/Philips/HL7 aECG XML, DICOM, ISHNE) and write it in the format "
                                          "the output suffix names. Files are written atomically.")
    p.add_argument("file", metavar="IN", help="ECG file to read")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="file to write: .hea (WFDB: OUT and its .dat), .edf or .csv (mV, with a time_s column)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="sampling rate in Hz; required for .csv/.npy input, must match the file for other formats")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import read_ecg
    from ..io.write import output_path, write_ecg
    from .read import RATELESS_SUFFIXES

    out = output_path(args.output)
    if args.rate is None and Path(args.file).suffix.lower() in RATELESS_SUFFIXES:
        raise ECGError(args.file, f"{Path(args.file).suffix} files carry no sampling rate; pass --rate HZ")
    for written in write_ecg(read_ecg(args.file, sampling_rate=args.rate), out):
        print(written)
    return 0
