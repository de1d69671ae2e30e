"""ecglens: interpretable 12-lead ECG classification.

    >>> import ecglens
    >>> ecg = ecglens.read_ecg(ecglens.sample_path(172))
    >>> ecg.signal.shape
    (12, 1000)
    >>> model = ecglens.load_model("protoecgnet")
    >>> explanation = model.explain(ecg)        # writes nothing; explanation.save(DIR) does
    >>> explanation.data["faithfulness"]["satisfied"]
    True

Names are imported lazily, so ``import ecglens`` (and the CLI) start without torch.
"""
from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Model": ".api",
    "calibrate": ".api",
    "list_models": ".api",
    "load_model": ".api",
    "ConfigError": ".errors",
    "ECGError": ".errors",
    "Explanation": ".explain",
    "ECG": ".io",
    "read_ecg": ".io",
    "Prediction": ".models.prediction",
    "Pipeline": ".preprocess",
    "load_sample": ".samples",
    "sample_path": ".samples",
    "Evaluation": ".scoring",
    "evaluate": ".scoring",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *sorted(_EXPORTS)]
