"""Evaluation metrics: AUROC, Fmax, bootstrap intervals and reports (numpy and scikit-learn only)."""
from .bootstrap import (bootstrap_indices, bootstrap_macro_auroc, get_or_make_bootstrap, load_bootstrap,
                        resample_counts)
from .classification import (auroc_counts, fmax, macro_auroc, per_label_auroc, prevalence_baseline,
                             scorable_labels)
from .report import evaluate_predictions, format_table

__all__ = [
    "auroc_counts", "bootstrap_indices", "bootstrap_macro_auroc", "evaluate_predictions", "fmax",
    "format_table", "get_or_make_bootstrap", "load_bootstrap", "macro_auroc", "per_label_auroc",
    "prevalence_baseline", "resample_counts", "scorable_labels",
]
