"""The black-box baseline: XResNet1d with the PTB-XL benchmark recipe and our default recipe."""
from .config import RECIPES, BaselineConfig, classifier_from_checkpoint, get_recipe
from .train import RecordDataset, positive_weights, train_baseline
from .xresnet1d import ARCHITECTURES, XResNet1d, XResNetConfig, count_parameters

__all__ = [
    "ARCHITECTURES", "RECIPES", "BaselineConfig", "RecordDataset", "XResNet1d", "XResNetConfig",
    "classifier_from_checkpoint", "count_parameters", "get_recipe", "positive_weights", "train_baseline",
]
