"""Serialisable preprocessing: the pipeline stored with every model and applied to every input."""
from .pipeline import (
    STEP_TYPES,
    Bandpass,
    FixLength,
    Highpass,
    Pipeline,
    Resample,
    Scale,
    Standardize,
    Step,
    resample_signal,
)

__all__ = [
    "STEP_TYPES", "Bandpass", "FixLength", "Highpass", "Pipeline", "Resample", "Scale",
    "Standardize", "Step", "resample_signal",
]
