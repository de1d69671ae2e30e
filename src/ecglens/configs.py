"""One way to turn config dataclasses into JSON-ready dicts and back.

Every config (model, recipe, stage settings) is a dataclass saved inside a
checkpoint's ``config.json``. ``config_to_dict`` writes tuples as lists and
nested dataclasses as dicts; ``config_from_dict`` rebuilds nested dataclasses
from the field types, ignores keys the class does not know (configs saved by
older versions load) and turns any invalid value into a ``ConfigError`` naming
``source``.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def config_to_dict(obj: Any) -> Any:
    """A dataclass (or a value inside one) as plain JSON types: dicts, lists, str, numbers, None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    return obj


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field's type names, directly or as ``X | None``."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def config_from_dict(cls: type[T], d: Any, source: str | os.PathLike | None = None) -> T:
    """``cls`` rebuilt from ``config_to_dict`` output; ``ConfigError`` naming ``source`` when it cannot be."""
    if isinstance(d, cls):
        return d
    name = cls.__name__
    if not isinstance(d, dict):
        raise ConfigError(source, f"{name}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d or not f.init:
            continue
        value, sub = d[f.name], _dataclass_in(hints.get(f.name))
        if sub is not None and isinstance(value, dict):
            value = config_from_dict(sub, value, source)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, f"invalid {name}: {exc}") from exc
