"""Stop cleanly on SIGTERM or SIGUSR1 (SLURM's ``--signal`` warning before the time limit or a preemption).

``runtime.stop_signals`` receives the signals (in this process only, never in its children). After each
step every rank shares whether it got one (an all-reduce, so a signal that reached some ranks only, or
reached them during different steps, stops all of them at the same step); the run then stops, the
checkpoint hook saves, and the process exits 0 so SLURM can requeue it.
"""

from __future__ import annotations

import logging
import signal

import torch
import torch.distributed as dist

from megatron_vl.runtime.stop_signals import stop_signal_received
from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)


class StopOnSignal(Hook):
    """Runs before the checkpoint hook (priority 400 < 500), so that the step where all ranks agree to stop is saved."""

    priority = 400

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        flag = torch.tensor([stop_signal_received()], dtype=torch.int64, device=trainer.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            name = signal.Signals(int(flag.item())).name
            logger.warning("%s received: saving at iteration %d and exiting", name, result.iteration)
            trainer.request_stop(f"{name} received")
