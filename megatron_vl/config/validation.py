"""Field validators shared by every config: each raises ``ValueError`` naming the field, the value and the fix.

``owner`` is how the message names the config (``"DataConfig"``, ``"StageRecipe stage2_vit"``); ``name`` is
the field. Booleans are never numbers here: ``True`` is not a positive integer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(owner: str, name: str, value, *, optional: bool = False) -> None:
    """An integer >= 1 (or None when ``optional``)."""
    if optional and value is None:
        return
    if not _is_int(value) or value < 1:
        alternative = " or None" if optional else ""
        raise ValueError(f"{owner}.{name} must be a positive integer{alternative}, got {value!r}")


def non_negative_int(owner: str, name: str, value) -> None:
    """An integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be an integer >= 0, got {value!r}")


def positive_number(owner: str, name: str, value) -> None:
    """A finite number > 0."""
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a positive finite number, got {value!r}")


def non_negative_number(owner: str, name: str, value) -> None:
    """A finite number >= 0."""
    if not _is_number(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def fraction(owner: str, name: str, value, *, upper_open: bool = False) -> None:
    """A number in [0, 1] (or [0, 1) when ``upper_open``)."""
    if not _is_number(value) or value < 0 or value > 1 or (upper_open and value == 1):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{owner}.{name} must be a number in {interval}, got {value!r}")


def one_of(owner: str, name: str, value, choices: Iterable) -> None:
    """One of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{owner}.{name}={value!r}: choose one of {choices}")


def divisible(what: str, value: int, divisor: int, divisor_name: str, fix: str) -> None:
    """``value`` is a multiple of ``divisor``; ``what`` and ``divisor_name`` name both sides in the message."""
    if value % divisor:
        raise ValueError(f"{what}={value} is not divisible by {divisor_name}={divisor}; {fix}")


def blend_weight(owner: str, dataset: str, weight) -> None:
    """One dataset's weight in a blend: positive and finite (weights are normalised over the blend)."""
    if not _is_number(weight) or weight <= 0:
        raise ValueError(
            f"{owner}: the weight of {dataset} must be a positive finite number, got {weight!r}; leave a dataset "
            "out of the blend instead of giving it weight 0"
        )


def distinct_blend(owner: str, datasets: list[str]) -> None:
    """A blend names at least one dataset, each once."""
    if not datasets:
        raise ValueError(f"{owner}: the blend is empty; give at least one dataset and its weight")
    repeated = sorted({dataset for dataset in datasets if datasets.count(dataset) > 1})
    if repeated:
        raise ValueError(f"{owner}: the blend lists {repeated} more than once; give each dataset once with its total weight")


def batch_sizes(owner: str, global_batch_size, micro_batch_size) -> None:
    """Positive batch sizes, the global one a whole number of micro-batches."""
    positive_int(owner, "global_batch_size", global_batch_size)
    positive_int(owner, "micro_batch_size", micro_batch_size)
    divisible(
        f"{owner}.global_batch_size", global_batch_size, micro_batch_size, "micro_batch_size",
        "make the global batch a whole number of micro-batches",
    )
