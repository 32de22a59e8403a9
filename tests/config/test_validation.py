"""The field validators every config uses: each refuses with the field, the value and what it must be."""

import math

import pytest

from megatron_vl.config import validation


@pytest.mark.parametrize("check, value, message", [
    (validation.positive_int, 0, "X.f must be a positive integer, got 0"),
    (validation.positive_int, True, "must be a positive integer, got True"),
    (validation.positive_int, 2.0, "must be a positive integer, got 2.0"),
    (validation.non_negative_int, -1, "X.f must be an integer >= 0, got -1"),
    (validation.positive_number, 0.0, "X.f must be a positive finite number, got 0.0"),
    (validation.positive_number, math.inf, "positive finite number, got inf"),
    (validation.non_negative_number, -0.5, "X.f must be a finite number >= 0"),
    (validation.fraction, 1.5, r"X.f must be a number in \[0, 1\], got 1.5"),
])
def test_refusals_name_the_field_and_the_value(check, value, message):
    with pytest.raises(ValueError, match=message):
        check("X", "f", value)


def test_accepted_values():
    validation.positive_int("X", "f", 3)
    validation.positive_int("X", "f", None, optional=True)
    validation.non_negative_int("X", "f", 0)
    validation.positive_number("X", "f", 1e-8)
    validation.non_negative_number("X", "f", 0)
    validation.fraction("X", "f", 1.0)
    validation.one_of("X", "f", "a", ("a", "b"))
    validation.batch_sizes("X", 8, 2)
    validation.blend_weight("X", "caption", 0.5)
    validation.distinct_blend("X", ["a", "b"])


def test_bounds_choices_and_blends():
    with pytest.raises(ValueError, match=r"\[0, 1\), got 1.0"):
        validation.fraction("X", "f", 1.0, upper_open=True)
    with pytest.raises(ValueError, match="positive integer or None, got 0"):
        validation.positive_int("X", "f", 0, optional=True)
    with pytest.raises(ValueError, match=r"X.f='c': choose one of \('a', 'b'\)"):
        validation.one_of("X", "f", "c", ("a", "b"))
    with pytest.raises(ValueError, match="X.global_batch_size=6 is not divisible by micro_batch_size=4"):
        validation.batch_sizes("X", 6, 4)
    with pytest.raises(ValueError, match="weight of ocr must be a positive finite number, got 0; leave a dataset out"):
        validation.blend_weight("X", "ocr", 0)
    with pytest.raises(ValueError, match="the blend is empty"):
        validation.distinct_blend("X", [])
    with pytest.raises(ValueError, match=r"lists \['a'\] more than once"):
        validation.distinct_blend("X", ["a", "b", "a"])
