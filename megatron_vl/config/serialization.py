"""Configs to and from plain JSON-able dicts: the resolved config saved with every run and checkpoint."""

from __future__ import annotations

import dataclasses
import types
import typing


def config_to_dict(config) -> dict:
    """A nested dataclass config as a dict of JSON-able values (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass config, got {type(config).__name__}")
    return {field.name: _to_plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def _to_plain(value):
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    return value


def config_from_dict(cls, data: dict, *, where: str | None = None):
    """Rebuild a dataclass config of type ``cls`` from ``config_to_dict`` output; unknown keys are errors."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object of {cls.__name__} fields, got {type(data).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _from_plain(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    return cls(**values)


def _from_plain(hint, value, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_plain(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where=where)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        item_hint = args[0] if args else typing.Any
        return tuple(_from_plain(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value))
    return value
