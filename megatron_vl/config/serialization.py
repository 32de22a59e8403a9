"""Dataclass configs and records (manifests, sample metadata, run records) to and from plain JSON-able dicts.

``config_to_dict`` gives the resolved config saved with every run and checkpoint; ``config_from_dict`` is the
one reader of such dicts: it rebuilds nested dataclasses, lists and tuples of them and dicts of them from the
field types, and refuses an object with missing or unknown fields, naming where it is.
"""

from __future__ import annotations

import dataclasses
import functools
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


@functools.cache
def _fields(cls) -> tuple[dict, set[str]]:
    """Type hint of every field of ``cls``, and the fields without a default (resolving hints is slow)."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = {
        field.name for field in fields
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    return {field.name: hints[field.name] for field in fields}, required


def config_from_dict(cls, data: dict, *, where: str | None = None):
    """Rebuild a dataclass of type ``cls`` from ``config_to_dict`` output (or any JSON object of its fields);
    missing and unknown fields are errors naming ``where`` (default: the class name)."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object of {cls.__name__} fields, got {type(data).__name__}")
    hints, required = _fields(cls)
    missing, unknown = sorted(required - data.keys()), sorted(data.keys() - hints.keys())
    if missing or unknown:
        raise ValueError(
            f"{where} has missing or unknown fields (missing {missing}, unknown {unknown}); {cls.__name__} has "
            f"{sorted(hints)}"
        )
    return cls(**{name: _from_plain(hints[name], value, f"{where}.{name}") for name, value in data.items()})


def _from_plain(hint, value, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_plain(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where=where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item_hint = args[0] if args else typing.Any
        items = [_from_plain(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(hint)
        value_hint = args[1] if args else typing.Any
        return {key: _from_plain(value_hint, item, f"{where}[{key!r}]") for key, item in value.items()}
    return value
