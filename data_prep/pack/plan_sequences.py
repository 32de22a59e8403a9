"""Which documents go together into one packed sequence: planning over document lengths only.

The documents are shuffled with the seed, then taken ``window`` at a time. Inside a window they are
sorted longest first and each goes into the open sequence it fits most tightly (best-fit
decreasing), or into a new one. Sorting a large window lets the many short documents fill the gaps
the long ones leave, so padding stays small, while the shuffle keeps any one sequence a random
draw from the data. Sequences still partly empty when a window ends stay open for the next one, up
to ``window`` of them, so the gaps of one window are filled by the next. The order of the finished
sequences is shuffled too, so neighbouring sequences do not follow the sort order.
"""

from __future__ import annotations

import bisect

import numpy as np


def plan_sequences(lengths: np.ndarray, *, seq_len: int, seed: int, window: int) -> list[list[int]]:
    """Document indices of each packed sequence; every index appears exactly once."""
    lengths = np.asarray(lengths, dtype=np.int64)
    assert lengths.size == 0 or (lengths.min() > 0 and lengths.max() <= seq_len), "split long documents first"
    assert window >= 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    sequences: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, sequence number) of the open sequences, sorted
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        for document in chunk.tolist():
            length = int(lengths[document])
            slot = bisect.bisect_left(free, (length, -1))
            if slot < len(free):
                room, number = free.pop(slot)
                sequences[number].append(document)
            else:
                room, number = seq_len, len(sequences)
                sequences.append([document])
            if room > length:
                bisect.insort(free, (room - length, number))
        if len(free) > window:
            # Keep the sequences with the most room open (they can still take long documents).
            free = free[-window:]
    return _shuffled(sequences, rng)


def _shuffled(sequences: list[list[int]], rng: np.random.Generator) -> list[list[int]]:
    return [sequences[i] for i in rng.permutation(len(sequences))]


def token_utilisation(lengths: np.ndarray, sequences: list[list[int]], seq_len: int) -> float:
    """Fraction of the packed tokens that are document tokens (1 - padding fraction)."""
    used = sum(int(np.sum(np.asarray(lengths)[sequence])) for sequence in sequences)
    return used / (len(sequences) * seq_len) if sequences else 1.0
