"""XResNet1d, the 1-D "bag of tricks" ResNet: the baseline's network and ProtoECGNet's optional shared trunk.

Exports are lazy (``ecglens._lazy``): the configuration imports without torch.
"""
from ..._lazy import lazy_exports

_EXPORTS = {
    "ARCHITECTURES": ".config",
    "XResNetConfig": ".config",
    "AdaptiveConcatPool1d": ".network",
    "ResBlock": ".network",
    "XResNet1d": ".network",
    "count_parameters": ".network",
    "xresnet_body": ".network",
    "xresnet_time_layers": ".network",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
