"""Datasets: PTB-XL metadata, label sets and folds; the memory-mapped signal cache; download/verify.

Names are imported on first use, so ``ecglens.datasets.cache`` (numpy only) loads
without pandas and the readers, e.g. in data-loader worker processes.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "SignalCache": "cache", "cache_key": "cache", "cache_size_bytes": "cache", "default_cache_dir": "cache",
    "iter_batches": "cache",
    "PTBXL_URL": "download", "download_file": "download", "download_ptbxl": "download",
    "parse_sha256sums": "download", "sha256_file": "download", "verify_dir": "download",
    "LABEL_SETS": "ptbxl", "PTBXL": "ptbxl", "TRAIN_FOLDS": "ptbxl", "LabelTable": "ptbxl",
    "LabelledSplit": "ptbxl", "jaccard_cooccurrence": "ptbxl", "PTBXL_SEX": "ptbxl", "parse_scp_codes": "ptbxl",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return __all__
