"""The global sample stream: which sample of which dataset sits at every position of a training run.

Datasets are interleaved greedily so that every prefix of the stream matches the weights as
closely as whole samples allow: position g goes to the dataset whose count lags its target
``weight * (g + 1)`` the most (megatron's blending rule). Within a dataset, its n-th draw is sample
``permutation_e[n mod N]`` of epoch ``e = n // N``, a fresh seeded shuffle every epoch; the samples
after it in that order stand in for it if it is corrupt.

The stream depends only on the dataset sizes, the weights and the seed, never on how many ranks
read it, and the greedy rule needs nothing but the position and the per-dataset counts to go on:
a ``StreamCursor`` is the whole state, so a run resumes from one at any data-parallel size.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class StreamCursor:
    """A point in the stream: ``position`` samples consumed, ``drawn[d]`` of them from dataset d."""

    position: int
    drawn: tuple[int, ...]

    def __post_init__(self) -> None:
        assert self.position == sum(self.drawn) and min(self.drawn) >= 0, self


class BlendedStream:
    """The deterministic stream over datasets of ``sizes`` samples blended by ``weights``."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], seed: int) -> None:
        assert len(sizes) == len(weights) > 0 and min(sizes) > 0 and min(weights) > 0
        self.sizes = [int(size) for size in sizes]
        total = float(sum(weights))
        self.weights = [float(weight) / total for weight in weights]
        self.seed = int(seed)
        self._permutations: dict[int, tuple[int, np.ndarray]] = {}

    def start(self) -> StreamCursor:
        return StreamCursor(0, (0,) * len(self.sizes))

    def take(self, cursor: StreamCursor, count: int) -> tuple[list[tuple[int, int]], StreamCursor]:
        """The next ``count`` positions after ``cursor`` as (dataset, draw number), and the cursor after them."""
        drawn = list(cursor.drawn)
        picks = []
        for position in range(cursor.position, cursor.position + count):
            lag = [weight * (position + 1) - done for weight, done in zip(self.weights, drawn)]
            dataset = lag.index(max(lag))
            picks.append((dataset, drawn[dataset]))
            drawn[dataset] += 1
        return picks, StreamCursor(cursor.position + count, tuple(drawn))

    def sample_indices(self, dataset: int, draw: int, count: int = 1) -> list[int]:
        """Index (within ``dataset``) of its ``draw``-th sample, then of the ``count - 1`` samples after it
        in the same epoch's order (wrapping around): its stand-ins should it be corrupt."""
        size = self.sizes[dataset]
        epoch, offset = divmod(draw, size)
        order = self.permutation(dataset, epoch)
        return [int(order[(offset + k) % size]) for k in range(min(count, size))]

    def permutation(self, dataset: int, epoch: int) -> np.ndarray:
        """The order of ``dataset``'s samples in ``epoch``; the stream moves forward, so only the
        latest epoch's order is kept."""
        cached = self._permutations.get(dataset)
        if cached is None or cached[0] != epoch:
            order = np.random.default_rng([self.seed, dataset, epoch]).permutation(self.sizes[dataset])
            cached = (epoch, order.astype(np.int32 if self.sizes[dataset] < 2**31 else np.int64))
            self._permutations[dataset] = cached
        return cached[1]
