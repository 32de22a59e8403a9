"""CIDEr-D: hand-computed tiny cases and values of the coco-caption scorer."""

import math

import pytest

from checkpoints_tools.benchmark_scoring.cider import caption_words, cider_d


def test_words():
    assert caption_words("A dog, running!  On the BEACH.") == ["a", "dog", "running", "on", "the", "beach"]


def test_hand_computed_identical_and_disjoint_captions():
    # Two images: log(images) = log 2. "a" is in both images' references, so its weight is log 2 - log 2 = 0;
    # "cat" and "a cat" are in one, weight log 2. A caption equal to its reference has cosine 1 for n = 1, 2 and
    # no 3-, 4-grams (0): 10 * (1 + 1 + 0 + 0) / 4 = 5.
    assert cider_d(["a cat", "a dog"], [["a cat"], ["a dog"]]) == pytest.approx([5.0, 5.0])
    # "a cat" against "a dog": they share only "a", whose weight is 0.
    assert cider_d(["a cat", "a cat"], [["a cat"], ["a dog"]]) == pytest.approx([5.0, 0.0])


def test_hand_computed_clipping_and_length_penalty():
    # "a cat a cat" against "a cat": unigram weights cat 2 log2 (hypothesis, clipped to log2) vs log2: cosine term
    # log2 * log2 / (2 log2 * log2) = 1/2. Bigrams "a cat" (2 log2), "cat a" (log2) vs "a cat" (log2):
    # log2 * log2 / (sqrt(5) log2 * log2) = 1/sqrt(5). No 3-, 4-grams in the reference: 0.
    # Lengths (bigram counts) 3 and 1: penalty exp(-2^2 / (2 * 6^2)).
    expected = 10 * (0.5 + 1 / math.sqrt(5)) / 4 * math.exp(-4 / 72)
    assert cider_d(["a cat a cat", "a dog"], [["a cat"], ["a dog"]])[0] == pytest.approx(expected)


def test_several_references_are_averaged():
    single = cider_d(["a cat", "a dog"], [["a cat"], ["a dog"]])[0]
    doubled = cider_d(["a cat", "a dog"], [["a cat", "a dog"], ["a dog"]])[0]
    # Now "a dog" is in both images' references: "dog" / "a dog" weigh 0 and "cat" / "a cat" still log 2, so
    # the second reference adds 0 and the first still gives 5: the mean over the two references is 2.5.
    assert single == pytest.approx(5.0) and doubled == pytest.approx(2.5)


def test_matches_the_coco_caption_scorer():
    # Values printed by pycocoevalcap 1.2's CiderScorer(n=4, sigma=6.0) on these (already tokenized) captions.
    candidates = ["a man rides a red bike down the street", "two dogs play in the park", "a plate of food on a table", "a cat sleeps"]
    references = [
        ["a man riding a bike on a street", "a person rides a red bicycle down the road"],
        ["dogs playing in a park", "two dogs running on grass", "a pair of dogs play outside"],
        ["a plate with food on a wooden table"],
        ["a cat sleeping on a couch", "a small cat is asleep"],
    ]
    scores = cider_d(candidates, references)
    assert scores == pytest.approx([2.2378140352867177, 1.4935120088320464, 3.016520452210961, 1.2563358658538855], abs=1e-12)
    assert sum(scores) / len(scores) == pytest.approx(2.0010455905459024, abs=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="at least one reference"):
        cider_d(["a cat"], [[]])
    with pytest.raises(ValueError, match="one list per candidate"):
        cider_d(["a cat"], [["a cat"], ["a dog"]])
