"""Process groups and the CPU emulation that lets megatron-core run without a GPU."""

from megatron_vl.runtime.distributed import (
    LaunchEnv,
    free_local_port,
    init_distributed,
    init_single_process,
    read_launch_env,
)
from megatron_vl.runtime.model_parallel import destroy_model_parallel, initialize_model_parallel, set_seed

__all__ = [
    "LaunchEnv",
    "destroy_model_parallel",
    "free_local_port",
    "init_distributed",
    "init_single_process",
    "initialize_model_parallel",
    "read_launch_env",
    "set_seed",
]
