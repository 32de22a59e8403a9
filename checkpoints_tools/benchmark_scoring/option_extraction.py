"""Which option a free-form answer to a multiple-choice question picks, as VLMEvalKit's exact matching reads it.

First a lone option letter: the answer's punctuation ``.()[],:;!*#{}`` becomes spaces, and if exactly one of the
options' letters is then a word of it ("A", "(A)", "A.", "Answer: A", "The answer is B, ..."), that letter. Else
(no letter, or two as in "A or B") the options' texts: if exactly one option's text (ignoring case) is contained
in the answer, its letter. Anything else is unanswered: ``None``, scored wrong.
"""

from __future__ import annotations

_SEPARATORS = str.maketrans({character: " " for character in ".()[],:;!*#{}"})


def extract_option(answer: str, options: dict[str, str]) -> str | None:
    """The letter of ``options`` (letter -> text) that ``answer`` picks, or None."""
    words = set(answer.translate(_SEPARATORS).split())
    letters = [letter for letter in options if letter in words]
    if len(letters) == 1:
        return letters[0]
    lowered = answer.lower()
    named = [letter for letter, text in options.items() if text.strip() and text.strip().lower() in lowered]
    return named[0] if len(named) == 1 else None
