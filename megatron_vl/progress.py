"""Progress of long work, shown to people: a live bar on a terminal, one summary line when output goes to a file.

A ``\\r``-redrawn bar written into a log file becomes thousands of fragments; so when the stream is not a
terminal the bar stays silent and its ``close`` prints one line (``pack: 12 shards in 3.4 s``). Setting
``TQDM_DISABLE`` (to anything but ``0`` / ``false`` / empty) silences both, as it does for tqdm itself.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def progress_disabled_by_environment() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


class ProgressBar:
    """Counts work done; draws a tqdm bar on a terminal, else prints one line when closed. ``unit`` is singular
    (``shard``): the bar shows ``shard/s``, the line ``12 shards``."""

    def __init__(
        self,
        *,
        desc: str,
        unit: str,
        total: int | None = None,
        initial: int = 0,
        enabled: bool = True,
        stream: IO[str] | None = None,
    ) -> None:
        self.desc = desc
        self.unit = unit
        self.count = initial
        self._initial = initial
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled and not progress_disabled_by_environment()
        interactive = self._enabled and self._stream.isatty()
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self._stream, disable=not interactive)
        self._interactive = interactive
        self._start = time.perf_counter()
        self._closed = False
        self._postfix: dict = {}

    def update(self, count: int = 1) -> None:
        self.count += count
        self._bar.update(count)

    def set_postfix(self, **values) -> None:
        """Extra figures beside the bar (and at the end of the summary line)."""
        self._bar.set_postfix(**values)
        self._postfix = values

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if self._enabled and not self._interactive:
            done = self.count - self._initial
            resumed = f" ({self._initial} done before)" if self._initial else ""
            extra = "".join(f", {key} {value}" for key, value in self._postfix.items())
            seconds = time.perf_counter() - self._start
            units = self.unit if done == 1 else f"{self.unit}s"
            print(f"{self.desc}: {done} {units}{resumed} in {seconds:.1f} s{extra}", file=self._stream, flush=True)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quiet_transformers_bars(stream: IO[str] | None = None) -> None:
    """transformers draws bars of its own (loading weights): switch them off where ours print no bar either."""
    stream = stream if stream is not None else sys.stderr
    if progress_disabled_by_environment() or not stream.isatty():
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def track(items: Iterable[Item], *, desc: str, unit: str, total: int | None = None, enabled: bool = True) -> Iterator[Item]:
    """``items``, counted by a ``ProgressBar`` closed when they run out."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with ProgressBar(desc=desc, unit=unit, total=total, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
