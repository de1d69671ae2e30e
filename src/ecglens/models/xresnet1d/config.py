"""The xresnet1d architecture's configuration (torch-free: read by CLI option parsing and other configs)."""
from __future__ import annotations

from dataclasses import dataclass

from ...configs import config_from_dict, config_to_dict

# name -> (expansion, layers), as in the ResNet family.
ARCHITECTURES: dict[str, tuple[int, tuple[int, ...]]] = {
    "xresnet1d18": (1, (2, 2, 2, 2)),
    "xresnet1d34": (1, (3, 4, 6, 3)),
    "xresnet1d50": (4, (3, 4, 6, 3)),
    "xresnet1d101": (4, (3, 4, 23, 3)),
}


@dataclass(frozen=True)
class XResNetConfig:
    """Architecture of an :class:`XResNet1d` (serialised into checkpoints).

    ``widths`` are the inner widths of the stages; a stage outputs
    ``width * expansion`` channels. ``stem`` lists the stem's three output widths.
    ``head_hidden=None`` maps the pooled features straight to the classes.
    """

    layers: tuple[int, ...] = (3, 4, 23, 3)
    expansion: int = 4
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: tuple[int, ...] = (32, 32, 64)
    kernel_size: int = 5
    in_channels: int = 12
    head_hidden: int | None = 128
    head_dropout: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        object.__setattr__(self, "stem", tuple(int(v) for v in self.stem))
        if len(self.layers) != len(self.widths) or not self.layers:
            raise ValueError(f"layers {self.layers} and widths {self.widths} must be non-empty and of equal length")
        if min(self.layers + self.widths + self.stem) < 1 or self.in_channels < 1:
            raise ValueError(f"layer counts and widths must be positive, got layers {self.layers}, widths "
                             f"{self.widths}, stem {self.stem}")
        if len(self.stem) != 3:
            raise ValueError(f"the stem has three convolutions, got widths {self.stem}")
        if self.expansion not in (1, 4):
            raise ValueError(f"expansion must be 1 (basic) or 4 (bottleneck), got {self.expansion}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    @classmethod
    def named(cls, name: str, **changes) -> "XResNetConfig":
        """A config for a named depth (``xresnet1d18/34/50/101``) with optional changes."""
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
        expansion, layers = ARCHITECTURES[name]
        return cls(layers=layers, expansion=expansion, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "XResNetConfig":
        return config_from_dict(cls, d)

    def to_dict(self) -> dict:
        return config_to_dict(self)
