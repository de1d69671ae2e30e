"""The black-box baseline: XResNet1d with the PTB-XL benchmark recipe and our default recipe.

Exports are lazy (``ecglens._lazy``): importing the package imports no model code.
"""
from ..._lazy import lazy_exports

_EXPORTS = {
    "BaselineConfig": ".config",
    "RECIPES": ".config",
    "classifier_from_checkpoint": ".config",
    "get_recipe": ".config",
    "positive_weights": ".train",
    "train_baseline": ".train",
    "ARCHITECTURES": "..xresnet1d",
    "XResNet1d": "..xresnet1d",
    "XResNetConfig": "..xresnet1d",
    "count_parameters": "..xresnet1d",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
