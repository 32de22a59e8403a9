"""``field.path=value`` command-line overrides of a (nested, frozen) dataclass config.

Values are JSON (``4``, ``1e-4``, ``true``, ``null``, ``[{"kind": "caption", "weight": 1}]``); anything that
is not JSON is taken as a string (``precision=fp32``). Each changed dataclass validates itself again.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing

from megatron_vl.config.serialization import config_from_dict


def apply_overrides(config, assignments: list[str]):
    """``config`` with every ``a.b.c=value`` of ``assignments`` applied, in order."""
    for assignment in assignments:
        path, separator, text = assignment.partition("=")
        if not separator or not path:
            raise ValueError(f"override {assignment!r} must look like field.path=value, e.g. checkpoint.save_every=100")
        config = _replace(config, path.split("."), text, path)
    return config


def _replace(config, names: list[str], text: str, path: str):
    fields = {field.name: field for field in dataclasses.fields(config)}
    name = names[0]
    if name not in fields:
        raise ValueError(f"override {path}: {type(config).__name__} has no field {name!r}; fields: {sorted(fields)}")
    if len(names) > 1:
        inner = getattr(config, name)
        if not dataclasses.is_dataclass(inner):
            raise ValueError(f"override {path}: {name} is a value, not a group of fields")
        value = _replace(inner, names[1:], text, path)
    else:
        value = _parse(typing.get_type_hints(type(config))[name], text, path)
    return dataclasses.replace(config, **{name: value})


def _parse(hint, text: str, path: str):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return _convert(hint, value, path)


def _convert(hint, value, path: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, path) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"override {path}: expected a JSON object of {hint.__name__} fields, got {value!r}")
        return config_from_dict(hint, value, where=path)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"override {path}: expected a JSON list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, element, f"{path}[{i}]") for i, element in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and not isinstance(value, str):
        return json.dumps(value)
    if hint in (int, float, bool, str) and not (type(value) is hint):
        raise ValueError(f"override {path}: expected {hint.__name__}, got {value!r}")
    return value
