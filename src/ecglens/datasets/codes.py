"""PTB-XL's label sets, folds and coded fields, without pandas (so the CLI and ``ecglens read`` stay light)."""
from __future__ import annotations

import ast

from ..errors import ECGError

LABEL_SETS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")  # the PTB-XL benchmark's
TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7, 8)
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
