"""SNOMED-CT diagnosis codes (challenge ``#Dx`` lines) -> PTB-XL SCP statements."""
from __future__ import annotations

import csv
from functools import lru_cache
from importlib.resources import files


@lru_cache(maxsize=1)
def snomed_to_scp_table() -> dict[str, str]:
    """The bundled mapping ``data/snomed_to_scp.csv`` as {snomed_ct: scp_code}.

    Only codes whose meaning equals a PTB-XL statement are listed; a few
    unspecified/specified pairs the PhysioNet/CinC challenges score as one class
    (e.g. RBBB 59118001 and CRBBB 713427006) share a statement, as the file's
    ``note`` column says.
    """
    text = files("ecglens").joinpath("data/snomed_to_scp.csv").read_text(encoding="utf-8")
    return {row["snomed_ct"].strip(): row["scp_code"].strip() for row in csv.DictReader(text.splitlines())}


def map_snomed(codes: list[str] | tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """(sorted unique SCP codes, codes with no mapping in input order) for SNOMED-CT codes."""
    table = snomed_to_scp_table()
    mapped = sorted({table[c] for c in codes if c in table})
    unmapped = [c for c in codes if c not in table]
    return tuple(mapped), unmapped
