"""An order-keeping process-pool map that reads its input lazily.

``multiprocessing.Pool.imap`` pulls the whole input into its task queue as fast as it can, which
for terabytes of shards means holding them in memory. This map keeps at most a few chunks per
worker in flight, so memory stays bounded, and yields results in input order, so the output does
not depend on the number of workers.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from megatron_vl.config.validation import positive_int

Item = TypeVar("Item")
Result = TypeVar("Result")

CHUNKS_IN_FLIGHT_PER_WORKER = 4


def _apply_to_chunk(function: Callable, chunk: list) -> list:
    return [function(item) for item in chunk]


def ordered_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
    chunk_size: int = 8,
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> Iterator[Result]:
    """``map(function, items)`` over ``workers`` processes (in this process when ``workers == 1``).

    ``function`` and ``initializer`` must be importable module-level callables; ``initializer``
    runs once per process (also here when ``workers == 1``) to set up what every call shares.
    """
    positive_int("ordered_map", "workers", workers)
    if workers == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    source = iter(items)
    with multiprocessing.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        pending: collections.deque = collections.deque()
        while chunk := list(itertools.islice(source, chunk_size)):
            pending.append(pool.apply_async(_apply_to_chunk, (function, chunk)))
            if len(pending) >= workers * CHUNKS_IN_FLIGHT_PER_WORKER:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()
