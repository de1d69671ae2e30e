"""Trained models: the family registry (``registry``), loading (``loading``) and the shared ``Classifier``.

Exports are lazy (``ecglens._lazy``): importing the package imports no model code.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "AGGREGATES": ".classifier",
    "Classifier": ".classifier",
    "make_windows": ".classifier",
    "window_starts": ".classifier",
    "windowed_probabilities": ".classifier",
    "load_any": ".loading",
    "load_classifier": ".loading",
    "resolve_checkpoint": ".loading",
    "ModelFamily": ".registry",
    "families": ".registry",
    "get_family": ".registry",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
