"""ecglens: interpretable 12-lead ECG classification."""
__version__ = "0.1.0"
