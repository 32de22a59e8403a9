"""Run a function on N gloo ranks (CPU) and collect what each rank returns.

Every multi-rank test goes through ``run_ranks``: each rank is a fresh spawned process with
``torch.distributed`` initialised on gloo and megatron's CUDA calls emulated on the CPU.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import queue
import traceback

import torch


def _rank_main(rank, world_size, port, fn, args, kwargs, results):
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    try:
        import torch

        torch.set_num_threads(1)
        from megatron_vl.runtime.distributed import init_distributed
        from megatron_vl.runtime.platform import detect_platform

        init_distributed(detect_platform())
        # Tensors go back by value: a shared-memory handle dies with this process.
        buffer = io.BytesIO()
        torch.save(fn(*args, **kwargs), buffer)
        results.put((rank, "ok", buffer.getvalue()))
    except BaseException:  # noqa: BLE001 - the parent re-raises it with the rank's traceback
        results.put((rank, "error", traceback.format_exc()))
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn, world_size: int, *args, timeout: float = 600, **kwargs) -> list:
    """Call ``fn(*args, **kwargs)`` on ``world_size`` ranks; return the results ordered by rank.

    ``fn`` must be importable (a module-level function) since ranks are spawned processes.
    A failure on any rank raises ``RuntimeError`` carrying that rank's traceback.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    from megatron_vl.runtime.distributed import free_local_port

    port = free_local_port()
    # Not daemonic: megatron's checkpoint writer starts a multiprocessing manager, which a daemonic
    # process may not; the finally clause below reaps the ranks instead.
    procs = [
        ctx.Process(target=_rank_main, args=(rank, world_size, port, fn, args, kwargs, results), daemon=False)
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    collected: dict[int, object] = {}
    try:
        while len(collected) < world_size:
            try:
                rank, status, value = results.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(f"ranks {sorted(set(range(world_size)) - set(collected))} timed out") from None
            if status == "error":
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            collected[rank] = torch.load(io.BytesIO(value), weights_only=False)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    return [collected[rank] for rank in range(world_size)]
