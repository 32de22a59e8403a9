"""The training log: every rank's lines in one format (rank 0 at INFO, the others at WARNING) on stdout,
without megatron-core's listing of every parameter name.

Imports nothing heavy at module level: megatron-core's checkpoint writer re-imports the entry point, which
imports this module.
"""

from __future__ import annotations

import logging
import sys

BUCKET_LOGGER = "megatron.core.distributed.param_and_grad_buffer"
"""megatron-core's DDP buffers log their buckets at INFO, one line per parameter name (hundreds for a 7B model)."""


class _ParameterNamesFilter(logging.Filter):
    """Keeps the bucket summary lines of megatron's bucket log and drops the tab-indented parameter names."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n\t" in message:
            record.msg = "\n".join(line for line in message.splitlines() if not line.startswith("\t"))
            record.args = None
        return True


def configure_training_logging() -> None:
    from megatron_vl.runtime.distributed import read_launch_env

    rank = read_launch_env().rank
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger(BUCKET_LOGGER).addFilter(_ParameterNamesFilter())
