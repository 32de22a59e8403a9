"""megatron-core parallel state and seeding for one run."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state, tensor_parallel
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_vl.config.parallel import ParallelConfig


def initialize_model_parallel(parallel: ParallelConfig) -> ProcessGroupCollection:
    """Create the TP / PP / DP (/ CP) groups for ``parallel`` and return them as one collection.

    ``torch.distributed`` must already be initialised (``runtime.init_distributed``). Model code
    receives the returned collection explicitly instead of reading ``parallel_state`` globals.
    """
    if not dist.is_initialized():
        raise RuntimeError("call megatron_vl.runtime.init_distributed() before initialize_model_parallel()")
    parallel.data_parallel_size(dist.get_world_size())
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        context_parallel_size=parallel.context_parallel,
    )
    return ProcessGroupCollection.use_mpu_process_groups()


def destroy_model_parallel() -> None:
    """Tear down megatron's groups (tests build several layouts in one process)."""
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()


def set_seed(seed: int, pg_collection: ProcessGroupCollection | None = None) -> None:
    """Seed Python, NumPy and torch identically on every rank, and megatron's TP RNG tracker.

    Dropout inside tensor-parallel regions then differs across TP ranks (as it must), while
    weights initialised outside the tracker are equal everywhere.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if pg_collection is not None:
        tensor_parallel.model_parallel_cuda_manual_seed(
            seed, tp_rank=pg_collection.tp.rank(), ep_rank=0, etp_rank=0, force_reset_rng=True
        )
