"""Datasets: PTB-XL metadata, label sets and folds; the memory-mapped signal cache; download/verify.

Names are imported on first use, so ``ecglens.datasets.cache`` (numpy only) loads
without pandas and the readers, e.g. in data-loader worker processes.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "SignalCache": ".cache", "cache_key": ".cache", "cache_size_bytes": ".cache", "default_cache_dir": ".cache",
    "iter_batches": ".cache",
    "LABEL_SETS": ".codes", "PTBXL_SEX": ".codes", "TRAIN_FOLDS": ".codes", "parse_scp_codes": ".codes",
    "PTBXL_URL": ".download", "download_file": ".download", "download_ptbxl": ".download",
    "parse_sha256sums": ".download", "sha256_file": ".download", "verify_dir": ".download",
    "PTBXL": ".ptbxl", "LabelTable": ".ptbxl",
    "LabelledSplit": ".ptbxl", "jaccard_cooccurrence": ".ptbxl",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
