"""``ecglens prototypes MODEL -o DIR``: the prototype gallery for clinician review."""
from __future__ import annotations

from . import COMMANDS


def register(subparsers) -> None:
    p = subparsers.add_parser("prototypes", help=COMMANDS["prototypes"],
                              description="Draw every prototype of a ProtoECGNet model: the real training ECG it "
                                          "was projected onto (its receptive field, or the whole record for "
                                          "whole-record prototypes), with that record's statements, the prototype's "
                                          "statement and branch. Also writes gallery.json, a blank rating sheet "
                                          "ratings.csv (representativeness and clarity 1-5, comment) and index.html.")
    p.add_argument("model", help="a ProtoECGNet checkpoint directory, training run, or shipped name (protoecgnet)")
    p.add_argument("-o", "--out", required=True, help="output directory (created; its gallery files are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while drawing")
    p.set_defaults(func=run)


def run(args) -> int:
    from collections import Counter

    from ..explain.gallery import INDEX_FILE, RATINGS_FILE, write_gallery

    items = write_gallery(args.model, args.out, progress=not args.no_progress)
    per_branch = Counter(i.branch for i in items)
    unprojected = sum(not i.source_record for i in items)
    print(f"{len(items)} prototypes ({', '.join(f'{b} {n}' for b, n in per_branch.items())}; "
          f"{unprojected} unprojected) drawn into {args.out}")
    print(f"open {args.out}/{INDEX_FILE}; rate them in {args.out}/{RATINGS_FILE}")
    return 0
