"""The packing plan: every document once, never over seq_len, seeded, and tight."""

import numpy as np
import pytest

from data_prep.pack.plan_sequences import plan_sequences, token_utilisation


def realistic_lengths(count, seq_len, seed=0):
    rng = np.random.default_rng(seed)
    captions = rng.integers(64, 1300, count) + rng.integers(10, 120, count)
    long_reasoning = np.clip(rng.lognormal(np.log(3000), 0.9, count), 300, seq_len).astype(int)
    return np.where(rng.random(count) < 0.8, captions, long_reasoning)


@pytest.mark.parametrize("window", [1, 7, 1000])
def test_every_document_exactly_once_and_within_seq_len(window):
    lengths = realistic_lengths(3000, 8192)
    sequences = plan_sequences(lengths, seq_len=8192, seed=3, window=window)
    placed = sorted(i for sequence in sequences for i in sequence)
    assert placed == list(range(len(lengths)))
    assert max(lengths[sequence].sum() for sequence in sequences) <= 8192


def test_same_seed_same_plan_other_seed_other_plan():
    lengths = realistic_lengths(2000, 8192)
    first = plan_sequences(lengths, seq_len=8192, seed=1, window=500)
    assert first == plan_sequences(lengths, seq_len=8192, seed=1, window=500)
    assert first != plan_sequences(lengths, seq_len=8192, seed=2, window=500)


def test_large_sorted_window_packs_tightly():
    lengths = realistic_lengths(20000, 8192)
    sequences = plan_sequences(lengths, seq_len=8192, seed=0, window=10000)
    assert token_utilisation(lengths, sequences, 8192) > 0.995
    in_order_window = plan_sequences(lengths, seq_len=8192, seed=0, window=1)
    assert token_utilisation(lengths, in_order_window, 8192) < token_utilisation(lengths, sequences, 8192)


def test_room_left_at_a_window_end_is_filled_by_the_next_window():
    # With a window of one document, each window alone would make one sequence per document.
    sequences = plan_sequences(np.full(4, 50), seq_len=100, seed=0, window=1)
    assert len(sequences) == 2


def test_sequence_order_is_shuffled_not_sorted_by_length():
    lengths = realistic_lengths(5000, 8192)
    sequences = plan_sequences(lengths, seq_len=8192, seed=0, window=5000)
    longest = [lengths[sequence].max() for sequence in sequences]
    assert longest != sorted(longest, reverse=True)
    assert abs(np.corrcoef(np.arange(len(longest)), longest)[0, 1]) < 0.2
