"""Pretrained models shipped inside the package, each a checkpoint directory named by its model."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def pretrained_root() -> Path:
    return Path(str(files(__name__)))


def list_pretrained() -> list[str]:
    """Names of the shipped checkpoints (directories holding a config.json)."""
    return sorted(p.name for p in pretrained_root().iterdir() if (p / "config.json").is_file())


def pretrained_dir(name: str) -> Path | None:
    """The shipped checkpoint called ``name``, or None."""
    p = pretrained_root() / name
    return p if (p / "config.json").is_file() else None
