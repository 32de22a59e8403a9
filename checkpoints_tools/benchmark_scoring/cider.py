"""CIDEr-D of captions against reference captions, as the coco-caption code defines it.

Each caption becomes counts of its n-grams, n = 1..4 (after ``caption_words``). An n-gram's weight is its count
times ``log(images) - log(max(1, df))``, with ``df`` the number of images whose references contain it: the
tf-idf is over the references of the file being scored. For each n, a candidate and one reference are compared by
the cosine of their weight vectors, where the candidate's weights are clipped to the reference's (the "-D" part),
times the length penalty ``exp(-delta^2 / (2 * 6^2))``, ``delta`` being the difference of their bigram counts (the
coco code's length). An image's score is 10 times the mean over n, averaged over its references; the file's CIDEr-D
is the mean over images.

One departure: coco-caption tokenizes with the Stanford PTB tokenizer (Java); ``caption_words`` lower-cases and
splits on whitespace and punctuation, which differs only where PTB splits words (``don't`` -> ``do n't``).
"""

from __future__ import annotations

import math
import string
from collections import Counter

MAX_N = 4
SIGMA = 6.0
_PUNCTUATION = str.maketrans({character: " " for character in string.punctuation})


def caption_words(caption: str) -> list[str]:
    return caption.lower().translate(_PUNCTUATION).split()


def ngram_counts(caption: str) -> Counter:
    words = caption_words(caption)
    return Counter(tuple(words[i:i + n]) for n in range(1, MAX_N + 1) for i in range(len(words) - n + 1))


def _weights(counts: Counter, document_frequency: Counter, log_images: float) -> tuple[list[dict], list[float], int]:
    """Per n: the tf-idf of each n-gram, the vector's norm; and the caption's length (its bigram count)."""
    vectors = [{} for _ in range(MAX_N)]
    for ngram, count in counts.items():
        vectors[len(ngram) - 1][ngram] = count * (log_images - math.log(max(1.0, document_frequency[ngram])))
    norms = [math.sqrt(sum(value * value for value in vector.values())) for vector in vectors]
    length = sum(count for ngram, count in counts.items() if len(ngram) == 2)
    return vectors, norms, length


def _similarity(candidate, reference) -> float:
    (candidate_vectors, candidate_norms, candidate_length) = candidate
    (reference_vectors, reference_norms, reference_length) = reference
    penalty = math.exp(-((candidate_length - reference_length) ** 2) / (2 * SIGMA**2))
    total = 0.0
    for n in range(MAX_N):
        reference_vector = reference_vectors[n]
        overlap = sum(
            min(value, reference_vector.get(ngram, 0.0)) * reference_vector.get(ngram, 0.0)
            for ngram, value in candidate_vectors[n].items()
        )
        if candidate_norms[n] and reference_norms[n]:
            overlap /= candidate_norms[n] * reference_norms[n]
        total += overlap * penalty
    return total / MAX_N


def cider_d(candidates: list[str], references: list[list[str]]) -> list[float]:
    """The CIDEr-D of each candidate against its references (the file's score is their mean)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists; give one list per candidate")
    if any(not refs for refs in references):
        raise ValueError("every candidate needs at least one reference caption")
    reference_counts = [[ngram_counts(reference) for reference in refs] for refs in references]
    document_frequency = Counter(ngram for counts in reference_counts for ngram in set().union(*counts))
    log_images = math.log(len(candidates)) if candidates else 0.0
    scores = []
    for candidate, counts in zip(candidates, reference_counts):
        hypothesis = _weights(ngram_counts(candidate), document_frequency, log_images)
        similarities = [_similarity(hypothesis, _weights(reference, document_frequency, log_images)) for reference in counts]
        scores.append(10.0 * sum(similarities) / len(similarities))
    return scores
