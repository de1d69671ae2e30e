"""About a dozen PTB-XL records bundled with ecglens for tests, demos and docs.

The WFDB files are unchanged copies from PTB-XL v1.0.3 (CC BY 4.0; see
``ATTRIBUTION.md``); ``index.csv`` holds their PTB-XL labels and facts.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from ..errors import ECGError
from ..datasets.codes import PTBXL_SEX, parse_scp_codes
from ..io import ECG, read_ecg


@dataclass(frozen=True)
class SampleInfo:
    """One bundled record: its PTB-XL statements and where its files are, per sampling rate."""

    ecg_id: int
    scp_codes: dict[str, float]
    labels: tuple[str, ...]
    rates: tuple[int, ...]
    paths: dict[int, Path]
    strat_fold: int
    age: int
    sex: int
    why: str = ""


def samples_dir() -> Path:
    """The directory that holds the bundled records (inside the installed package)."""
    return Path(str(files(__name__)))


@lru_cache(maxsize=1)
def _index() -> dict[int, SampleInfo]:
    root = samples_dir()
    out: dict[int, SampleInfo] = {}
    with open(root / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            codes = {str(k): float(v) for k, v in parse_scp_codes(row["scp_codes"], root / "index.csv", row["ecg_id"]).items()}
            paths = {100: root / row["filename_lr"]}
            if row["filename_hr"]:
                paths[500] = root / row["filename_hr"]
            eid = int(row["ecg_id"])
            out[eid] = SampleInfo(
                ecg_id=eid,
                scp_codes=codes,
                labels=tuple(sorted(codes)),
                rates=tuple(sorted(paths)),
                paths=paths,
                strat_fold=int(row["strat_fold"]),
                age=int(row["age"]),
                sex=int(row["sex"]),
                why=row["why"],
            )
    return out


def list_samples() -> list[SampleInfo]:
    """Every bundled record, by ecg_id."""
    return [_index()[k] for k in sorted(_index())]


def sample_path(ecg_id: int, sampling_rate: int = 100) -> Path:
    """The record path (no suffix, as WFDB names it) of a bundled sample at 100 or 500 Hz."""
    info = _index().get(int(ecg_id))
    if info is None:
        raise ECGError(None, f"no bundled sample with ecg_id={ecg_id}; available: {sorted(_index())}")
    if int(sampling_rate) not in info.paths:
        raise ECGError(None, f"bundled sample {ecg_id} has no {sampling_rate} Hz version; available: {list(info.rates)} Hz")
    return info.paths[int(sampling_rate)]


def load_sample(ecg_id: int, sampling_rate: int = 100) -> ECG:
    """Read a bundled sample; ``labels`` are its PTB-XL statements (any likelihood), sorted."""
    ecg = read_ecg(sample_path(ecg_id, sampling_rate))
    info = _index()[int(ecg_id)]
    meta = dict(ecg.metadata)
    meta.update(ecg_id=info.ecg_id, scp_codes=dict(info.scp_codes), strat_fold=info.strat_fold, age=info.age, sex=PTBXL_SEX.get(info.sex, info.sex), dataset="PTB-XL 1.0.3")
    return replace(ecg, labels=info.labels, metadata=meta)


__all__ = ["SampleInfo", "list_samples", "load_sample", "sample_path", "samples_dir"]
