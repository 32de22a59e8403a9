"""What every command-line entry point shares: one policy for user errors, and byte sizes read and written.

The policy: a ``ValueError`` is a user error whose message names the input and the fix. The entry point
prints ``PROG: error: MESSAGE`` to stderr and exits 2, without a traceback. Any other exception is a bug
and keeps its traceback. ``MVL_TRACEBACK=1`` shows the traceback of user errors too (for a bug report).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

USER_ERROR_EXIT_CODE = 2
_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BYTE_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", re.IGNORECASE)


def report_user_error(prog: str, error: ValueError) -> int:
    """Print ``error`` as a user error of ``prog``; returns the exit code. Re-raises it under ``MVL_TRACEBACK=1``."""
    if os.environ.get("MVL_TRACEBACK", "") not in ("", "0"):
        raise error
    print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
    return USER_ERROR_EXIT_CODE


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """Parse ``argv`` and return ``run(args)``; a ``ValueError`` is reported as a user error (exit 2)."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        return report_user_error(parser.prog, error)


def parse_byte_size(text: str) -> int:
    """``512MB``, ``1.5GB``, ``2GiB``, ``64kB`` or a plain byte count, as a positive number of bytes.

    kB / MB / GB / TB are powers of 1000, KiB / MiB / GiB / TiB powers of 1024; case does not matter.
    """
    match = _BYTE_SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"cannot read the byte size {text!r}: write e.g. 512MB, 1.5GB, 2GiB or a byte count")
    value = int(float(match.group(1)) * _BYTE_UNITS[(match.group(2) or "b").lower()])
    if value <= 0:
        raise ValueError(f"byte size {text!r} must be positive")
    return value


def human_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")
