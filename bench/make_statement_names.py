"""Regenerate the shipped statement descriptions (src/ecglens/data/scp_descriptions.csv) from PTB-XL's
scp_statements.csv (CC BY 4.0; attribution in src/ecglens/data/ATTRIBUTION.md).

    python bench/make_statement_names.py ../shared/data/ptb-xl
"""
from __future__ import annotations

import sys
from pathlib import Path

from ecglens.statements import TABLE, write_descriptions

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = write_descriptions(Path(argv[0]) / "scp_statements.csv", REPO / "src" / "ecglens" / TABLE)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
