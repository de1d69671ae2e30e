"""The documented error types: ``ECGError`` for bad input, ``ConfigError`` for a bad model config or checkpoint."""
from __future__ import annotations

import os


class ECGError(ValueError):
    """Bad input: a file or record ecglens cannot use.

    The message always names the file (or record) and the problem, e.g.
    ``"data/x.hea: header names 12 signals but the .dat holds 11"``.
    ``path`` and ``problem`` stay available as attributes for callers that
    collect errors (skipped-record reports) instead of stopping.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(ECGError):
    """A model configuration or checkpoint ecglens cannot use (invalid value, missing field, weights that
    do not fit or are not finite). It is an ``ECGError`` (and so a ``ValueError``): the CLI reports it
    as one line naming the file, without a traceback."""
