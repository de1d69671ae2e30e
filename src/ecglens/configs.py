"""One way to turn config dataclasses into JSON-ready dicts and back.

Every config (model, recipe, stage settings) is a dataclass saved inside a
checkpoint's ``config.json``. ``config_to_dict`` writes tuples as lists and
nested dataclasses as dicts; ``config_from_dict`` rebuilds nested dataclasses
and tuples from the field types, refuses keys the class does not know (a typo
must not be silently ignored) and turns any invalid value into a
``ConfigError`` naming ``source``.
"""
from __future__ import annotations

import dataclasses
import os
import types
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


def _convert(hint: Any, value: Any, source) -> Any:
    """``value`` as the field type ``hint`` asks: a nested dataclass from a dict, a tuple from a list
    (directly or inside ``X | None``)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return config_from_dict(option, value, source)
        if (option is tuple or typing.get_origin(option) is tuple) and isinstance(value, list):
            return tuple(value)
    return value


def config_from_dict(cls: type[T], d: Any, source: str | os.PathLike | None = None) -> T:
    """``cls`` rebuilt from ``config_to_dict`` output; ``ConfigError`` naming ``source`` when it cannot be."""
    if isinstance(d, cls):
        return d
    name = cls.__name__
    if not isinstance(d, dict):
        raise ConfigError(source, f"{name}: expected a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(source, f"{name}: unknown field(s) {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(hints.get(k), v, source) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, f"invalid {name}: {exc}") from exc
