"""The training log: every rank's lines in one format (rank 0 at INFO, the others at WARNING) on stdout,
without megatron-core's listing of every parameter name.

Kept free of torch and megatron-core imports: the entry point configures logging before importing them.
"""

from __future__ import annotations

import logging
import os
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


def launch_rank() -> int:
    """This process's global rank as its launcher (torchrun or SLURM) sets it; 0 outside a launched job."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))


def configure_training_logging() -> None:
    rank = launch_rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger(BUCKET_LOGGER).addFilter(_ParameterNamesFilter())
