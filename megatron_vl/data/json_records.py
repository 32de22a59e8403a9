"""Typed records stored as JSON objects (manifests, sample metadata): reading one refuses missing and unknown fields.

A record is a keyword-only frozen dataclass; its JSON object has one key per field, in field order.
"""

from __future__ import annotations

import dataclasses


def record_fields(cls: type, values, *, what: str) -> dict:
    """The JSON object ``values`` as keyword arguments of the dataclass ``cls``; a ValueError names ``what``
    (e.g. ``"the manifest"``) and the missing and unknown fields. Callers add where it is and the fix."""
    if not isinstance(values, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(values).__name__}")
    fields = dataclasses.fields(cls)
    required = {
        field.name for field in fields
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - values.keys())
    unknown = sorted(values.keys() - {field.name for field in fields})
    if missing or unknown:
        raise ValueError(f"{what} has missing or unknown fields (missing {missing}, unknown {unknown})")
    return dict(values)
