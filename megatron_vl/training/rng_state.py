"""Every random generator a rank draws from, captured for a checkpoint and restored on resume."""

from __future__ import annotations

import random

import numpy as np
import torch
from megatron.core import tensor_parallel


def capture_rng_state(*, with_cuda: bool) -> dict:
    """Python, NumPy, torch (CPU, and CUDA ``with_cuda``) and megatron's model-parallel RNG tracker states of
    this rank."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if with_cuda:
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict, *, with_cuda: bool) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and with_cuda:
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
