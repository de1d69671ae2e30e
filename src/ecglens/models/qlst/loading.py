"""qLST checkpoints as the family declares them: ``(state, config, path, device) -> QLST``."""
from __future__ import annotations

from typing import Any


def qlst_from_checkpoint(state: dict[str, Any], config: dict[str, Any], path=None, device=None):
    """The trained ``QLST`` at ``path`` with the VAE and classifier its config names."""
    from .train import load_qlst

    return load_qlst(path, device=device or "cpu")
