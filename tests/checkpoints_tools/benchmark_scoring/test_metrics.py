"""ANLS, relaxed accuracy, exact match and box IoU against hand-computed cases."""

import pytest

from checkpoints_tools.benchmark_scoring.metrics import (
    anls, box_iou, exact_match, levenshtein, normalize_answer, relaxed_accuracy, relaxed_correct,
)


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_anls_similarity_case_and_spaces():
    assert anls("  The   Answer ", ["the answer"]) == 1.0
    # One substitution in 10 characters: NL = 0.1.
    assert anls("0123456789", ["0123456780"]) == pytest.approx(0.9)


def test_anls_threshold():
    # 4 edits over 10 characters: NL = 0.4 < 0.5, kept.
    assert anls("abcdefghij", ["abcdefwxyz"]) == pytest.approx(0.6)
    # 5 over 10: NL = 0.5 is not below the threshold, so 0 (not 0.5).
    assert anls("abcdefghij", ["abcdevwxyz"]) == 0.0
    assert anls("completely different", ["xyz"]) == 0.0


def test_anls_takes_the_closest_of_several_answers():
    assert anls("1995", ["nineteen ninety-five", "1996", "1995"]) == 1.0
    # "1996" is 1 edit of 4 (0.75), "19 95" 1 of 5 (0.8): the best is kept.
    assert anls("1995", ["1996", "19 95"]) == pytest.approx(0.8)
    assert anls("", [""]) == 1.0


def test_relaxed_accuracy_numbers():
    assert relaxed_correct("10.4", "10")
    assert relaxed_correct("9.5", "10")
    assert not relaxed_correct("10.6", "10")
    assert relaxed_correct("1,234", "1234")
    assert relaxed_correct("1,200", "1,180")
    assert relaxed_correct("45%", "0.45") and relaxed_correct("0.45", "45 %")
    assert not relaxed_correct("45", "45%")
    assert relaxed_correct("0", "0.0") and not relaxed_correct("0.01", "0")
    assert relaxed_correct("-3", "-3.1")


def test_relaxed_accuracy_strings_and_answer_lists():
    assert relaxed_correct(" Yes ", "yes")
    assert not relaxed_correct("yes.", "yes")
    assert relaxed_accuracy("Blue", ["red", "blue"]) == 1.0
    assert relaxed_accuracy("green", ["red", "blue"]) == 0.0


def test_exact_match_normalization():
    assert normalize_answer("The Red, car!") == "red car"
    assert normalize_answer("3.5 kg.") == "3.5 kg"
    assert exact_match("A dog.", ["dog"]) == 1.0
    assert exact_match("two dogs", ["dog", "2 dogs"]) == 0.0
    assert exact_match("2 dogs", ["dog", "2 dogs"]) == 1.0


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([10, 10, 0, 0], [0, 0, 5, 10]) == pytest.approx(0.5)  # corners in either order
    assert box_iou([3, 3, 3, 8], [0, 0, 10, 10]) == 0.0  # an empty box
