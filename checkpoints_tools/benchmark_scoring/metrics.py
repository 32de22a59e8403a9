"""Per-row answer metrics of open VQA and grounding benchmarks (CIDEr, which needs the whole file, is in ``cider``).

* ANLS (DocVQA, InfoVQA): ``1 - NL`` for the closest acceptable answer, where ``NL`` is the Levenshtein distance
  over the longer length of the two lower-cased, whitespace-collapsed strings; 0 where ``NL >= 0.5``.
* Relaxed accuracy (ChartQA): numbers (commas dropped, ``%`` divided by 100) may be within 5% of the answer;
  anything else must equal it, ignoring case and surrounding space.
* Exact match: equal after ``normalize_answer`` (lower case, punctuation and the articles a / an / the removed).
* IoU of two boxes ``[x1, y1, x2, y2]`` in continuous pixel coordinates.
"""

from __future__ import annotations

import re
import string

ANLS_THRESHOLD = 0.5
RELAXED_TOLERANCE = 0.05
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = str.maketrans({character: " " for character in string.punctuation})


def levenshtein(first: str, second: str) -> int:
    """Insertions, deletions and substitutions that turn ``first`` into ``second``."""
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i]
        for j, b in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def _collapse(text: str) -> str:
    return " ".join(text.lower().split())


def anls(prediction: str, answers: list[str] | tuple[str, ...], threshold: float = ANLS_THRESHOLD) -> float:
    """Normalized Levenshtein similarity to the closest of ``answers``, 0 below the threshold."""
    best = 0.0
    predicted = _collapse(prediction)
    for answer in answers:
        expected = _collapse(answer)
        length = max(len(predicted), len(expected))
        distance = levenshtein(predicted, expected) / length if length else 0.0
        if distance < threshold:
            best = max(best, 1.0 - distance)
    return best


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    scale = 1.0
    if text.endswith("%"):
        text, scale = text[:-1].strip(), 0.01
    try:
        return float(text) * scale
    except ValueError:
        return None


def relaxed_correct(prediction: str, answer: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """ChartQA's relaxed correctness of one answer."""
    predicted, expected = _number(prediction), _number(answer)
    if predicted is not None and expected is not None:
        if expected == 0:
            return predicted == 0
        return abs(predicted - expected) / abs(expected) <= tolerance
    return prediction.strip().lower() == answer.strip().lower()


def relaxed_accuracy(prediction: str, answers: list[str] | tuple[str, ...]) -> float:
    return float(any(relaxed_correct(prediction, answer) for answer in answers))


def normalize_answer(text: str) -> str:
    """Lower case, punctuation turned into spaces (a decimal point between digits kept), articles dropped."""
    text = re.sub(r"(?<=\d)\.(?=\d)", "\0", text.lower()).translate(_PUNCTUATION).replace("\0", ".")
    return " ".join(word for word in text.split() if word not in _ARTICLES)


def exact_match(prediction: str, answers: list[str] | tuple[str, ...]) -> float:
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(answer) for answer in answers))


def box_iou(first: tuple[float, ...] | list[float], second: tuple[float, ...] | list[float]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes (corners in either order); 0 for empty boxes."""
    ax1, ax2 = sorted((first[0], first[2]))
    ay1, ay2 = sorted((first[1], first[3]))
    bx1, bx2 = sorted((second[0], second[2]))
    by1, by2 = sorted((second[1], second[3]))
    width = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    height = max(0.0, min(ay2, by2) - max(ay1, by1))
    intersection = width * height
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - intersection
    return intersection / union if union > 0 else 0.0
