"""Evaluation metrics: AUROC, Fmax, bootstrap intervals, calibration, calls at thresholds and reports
(numpy and scikit-learn only)."""
from .bootstrap import (REDRAW_RULE, bootstrap_indices, bootstrap_macro_auroc, get_or_make_bootstrap,
                        keeps_labels_scorable, load_bootstrap, resample_counts)
from .calibration import DEFAULT_BINS, brier_scores, calibration_report, expected_calibration_errors, reliability_bins
from .classification import (auroc_counts, calls_at, fmax, macro_auroc, per_label_auroc, prevalence_baseline, sample_f1,
                             scorable_labels)
from .report import evaluate_predictions, format_table, threshold_report

__all__ = [
    "DEFAULT_BINS", "REDRAW_RULE", "auroc_counts", "bootstrap_indices", "bootstrap_macro_auroc", "brier_scores",
    "calibration_report", "calls_at", "evaluate_predictions", "expected_calibration_errors", "fmax", "format_table",
    "get_or_make_bootstrap", "keeps_labels_scorable", "load_bootstrap", "macro_auroc", "per_label_auroc",
    "prevalence_baseline", "reliability_bins", "resample_counts", "sample_f1", "scorable_labels", "threshold_report",
]
