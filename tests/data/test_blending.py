"""The global sample stream: weights in every prefix, resumable from a cursor, a fresh shuffle per epoch."""

import numpy as np

from megatron_vl.data.blending import BlendedStream, StreamCursor

SIZES = [5, 50, 20]
WEIGHTS = [1.0, 2.0, 7.0]


def test_every_prefix_follows_the_weights():
    stream = BlendedStream(SIZES, WEIGHTS, seed=0)
    picks, cursor = stream.take(stream.start(), 1000)
    counts = np.zeros(len(SIZES))
    weights = np.array(WEIGHTS) / sum(WEIGHTS)
    for length, (dataset, draw) in enumerate(picks, start=1):
        assert draw == counts[dataset]  # draws of a dataset are numbered in stream order
        counts[dataset] += 1
        assert np.all(np.abs(counts - weights * length) <= 1), (length, counts)
    assert cursor == StreamCursor(1000, (100, 200, 700))


def test_continuing_from_a_cursor_gives_the_same_stream():
    stream = BlendedStream(SIZES, WEIGHTS, seed=3)
    whole, end = stream.take(stream.start(), 300)
    first, middle = stream.take(stream.start(), 137)
    rest, resumed_end = BlendedStream(SIZES, WEIGHTS, seed=3).take(middle, 163)
    assert first + rest == whole and resumed_end == end


def test_each_epoch_is_a_new_shuffle_of_the_whole_dataset():
    stream = BlendedStream(SIZES, WEIGHTS, seed=11)
    size = SIZES[2]
    epochs = [[stream.sample_indices(2, epoch * size + i)[0] for i in range(size)] for epoch in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(size))
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(size))
    # Going back to an evicted epoch recomputes the same order.
    assert [stream.sample_indices(2, i)[0] for i in range(size)] == epochs[0]
    # Stand-ins for a corrupt sample: the next ones of its epoch, wrapping around, never past the dataset.
    assert stream.sample_indices(2, 2 * size - 1, 3) == [epochs[1][-1], epochs[1][0], epochs[1][1]]
    assert sorted(stream.sample_indices(0, 0, 8)) == list(range(SIZES[0]))


def test_the_stream_is_a_function_of_the_seed():
    def stream_of(seed):
        stream = BlendedStream(SIZES, WEIGHTS, seed=seed)
        picks, _ = stream.take(stream.start(), 200)
        return [(dataset, stream.sample_indices(dataset, draw)[0]) for dataset, draw in picks]

    assert stream_of(5) == stream_of(5)
    assert stream_of(5) != stream_of(6)
