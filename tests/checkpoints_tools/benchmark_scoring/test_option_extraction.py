"""Which option a free-form answer picks: a lone letter, else exactly one option's text, else none."""

import pytest

from checkpoints_tools.benchmark_scoring.option_extraction import extract_option

OPTIONS = {"A": "a red circle", "B": "a blue square", "C": "two dogs", "D": "none of these"}


@pytest.mark.parametrize("answer", ["B", "(B)", "B.", "Answer: B", "The answer is B, a blue square.", "**B**", "[B]"])
def test_a_lone_letter(answer):
    assert extract_option(answer, OPTIONS) == "B"


def test_letters_of_no_option_do_not_count():
    assert extract_option("E", OPTIONS) is None
    assert extract_option("E or C", OPTIONS) == "C"


def test_option_text_when_there_is_no_letter():
    assert extract_option("I see two dogs playing.", OPTIONS) == "C"
    assert extract_option("It is A Blue Square", {"B": "a blue square", "C": "a circle"}) == "B"


def test_ambiguous_answers_are_unanswered():
    assert extract_option("A or B", {"A": "cat", "B": "dog"}) is None
    assert extract_option("either a cat or a dog", {"A": "cat", "B": "dog"}) is None
    assert extract_option("I cannot tell.", OPTIONS) is None
    assert extract_option("", OPTIONS) is None


def test_two_letters_fall_back_to_the_text():
    assert extract_option("A or B. It is a dog", {"A": "cat", "B": "dog"}) == "B"


def test_lowercase_letters_are_words_not_options():
    assert extract_option("b", {"A": "cat", "B": "dog"}) is None


def test_only_the_listed_separators_split_words():
    # "?" is not one of VLMEvalKit's separators: "B?" is no letter, so the lone letter is A.
    assert extract_option("A or B? It is a dog", {"A": "cat", "B": "dog"}) == "A"
