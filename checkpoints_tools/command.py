"""What the three command-line tools share: running one with user errors reported as messages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """Parse ``argv`` and call ``run``; a ``ValueError`` (a user error, its fix in the message) exits 2."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")
