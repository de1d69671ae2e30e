"""PTB-XL's coded fields, parsed without pandas (so ``ecglens read`` stays light)."""
from __future__ import annotations

import ast

from ..errors import ECGError

PTBXL_SEX = {0: "Male", 1: "Female"}  # PTB-XL codes sex as 0 = male, 1 = female


def parse_scp_codes(text, source, ecg_id) -> dict:
    """The ``scp_codes`` column's dict literal (statement -> likelihood), parsed without ``eval``."""
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as exc:
        raise ECGError(source, f"ecg_id {ecg_id}: scp_codes {text!r} is not a dict literal ({exc})") from exc
    if not isinstance(value, dict):
        raise ECGError(source, f"ecg_id {ecg_id}: scp_codes {text!r} is not a dict")
    return value
