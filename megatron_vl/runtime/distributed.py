"""Process-group initialisation from torchrun or SLURM environment variables."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import socket

import torch
import torch.distributed as dist

from megatron_vl.runtime import cpu_emulation
from megatron_vl.runtime.platform import Platform


@dataclasses.dataclass(frozen=True, kw_only=True)
class LaunchEnv:
    """Where this process sits in the job, as its launcher describes it."""

    rank: int
    """Global rank of this process."""
    world_size: int
    """Number of processes in the job."""
    local_rank: int
    """Rank of this process on its node (selects the GPU)."""
    master_addr: str
    """Host of rank 0, where the rendezvous store listens."""
    master_port: int
    """Port of the rendezvous store."""
    launcher: str
    """``torchrun``, ``slurm`` or ``single``: which variables these values came from."""


def expand_slurm_nodelist(nodelist: str) -> list[str]:
    """Expand SLURM's compressed host list (``gpu[01-03,07],login1``) into host names."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?(?:,|$)", nodelist):
        prefix, ranges = match.group(1), match.group(2)
        if not prefix and not ranges:
            continue
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            if "-" in part:
                start, end = part.split("-", 1)
                width = len(start)
                hosts.extend(f"{prefix}{i:0{width}d}" for i in range(int(start), int(end) + 1))
            else:
                hosts.append(f"{prefix}{part}")
    if not hosts:
        raise ValueError(f"could not parse the SLURM node list {nodelist!r}: expected e.g. 'node[01-04],gpu7'")
    return hosts


def _require_int(env: dict, name: str) -> int:
    try:
        return int(env[name])
    except KeyError:
        raise ValueError(f"environment variable {name} is not set; launch with torchrun or srun") from None
    except ValueError:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None


def read_launch_env(env: dict | None = None) -> LaunchEnv:
    """Read rank and rendezvous from torchrun variables, else SLURM's, else a single process.

    torchrun variables win when both are present: ``srun torchrun ...`` sets SLURM
    variables per node but torchrun's per process.
    """
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(
            rank=_require_int(env, "RANK"),
            world_size=_require_int(env, "WORLD_SIZE"),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            launcher="torchrun",
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if "MASTER_ADDR" in env:
            master_addr = env["MASTER_ADDR"]
        elif nodelist:
            master_addr = expand_slurm_nodelist(nodelist)[0]
        else:
            raise ValueError("SLURM job without SLURM_JOB_NODELIST or MASTER_ADDR: cannot find rank 0's host")
        # A port derived from the job id keeps two jobs sharing a node from colliding.
        default_port = 20000 + int(env.get("SLURM_JOB_ID", 0)) % 20000
        return LaunchEnv(
            rank=_require_int(env, "SLURM_PROCID"),
            world_size=_require_int(env, "SLURM_NTASKS"),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=master_addr,
            master_port=int(env.get("MASTER_PORT", default_port)),
            launcher="slurm",
        )
    return LaunchEnv(
        rank=0,
        world_size=1,
        local_rank=0,
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=int(env.get("MASTER_PORT", 29500)),
        launcher="single",
    )


def init_distributed(platform: Platform, launch: LaunchEnv | None = None, *, timeout_minutes: int = 30) -> LaunchEnv:
    """Initialise ``torch.distributed`` for ``platform``: NCCL on GPUs (this rank's GPU selected), gloo with the
    CPU emulation otherwise."""
    launch = launch or read_launch_env()
    if dist.is_initialized():
        if dist.get_rank() != launch.rank or dist.get_world_size() != launch.world_size:
            raise ValueError(
                f"torch.distributed is already initialised as rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, but the launch environment says {launch.rank} of {launch.world_size}"
            )
        return launch
    if platform.on_gpu:
        torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
    if platform.cpu_emulation:
        cpu_emulation.enable()
    dist.init_process_group(
        backend=platform.collective_backend,
        init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
        rank=launch.rank,
        world_size=launch.world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    return launch


def free_local_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now: the rendezvous of a world on this machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_single_process(platform: Platform) -> LaunchEnv:
    """A one-rank world on this machine, for tools that build megatron-core models outside a launched job."""
    return init_distributed(platform, LaunchEnv(
        rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1", master_port=free_local_port(), launcher="single",
    ))
