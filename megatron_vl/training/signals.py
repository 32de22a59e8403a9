"""Stop cleanly on SIGTERM or SIGUSR1 (SLURM's ``--signal`` warning before the time limit or a preemption).

The handler only sets a flag. After each step every rank shares its flag (an all-reduce, so a signal
that reached some ranks only, or reached them during different steps, stops all of them at the same
step); the run then stops, the checkpoint hook saves, and the process exits 0 so SLURM can requeue it.
"""

from __future__ import annotations

import logging
import signal

import torch
import torch.distributed as dist

from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopOnSignal(Hook):
    """Runs before the checkpoint hook (priority 400 < 500), so that the step where all ranks agree to stop is saved."""

    priority = 400

    def __init__(self, signals=STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received = 0
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def on_start(self, trainer: Trainer) -> None:
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        flag = torch.tensor([self.received], dtype=torch.int64, device=trainer.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            name = signal.Signals(int(flag.item())).name
            logger.warning("%s received: saving at iteration %d and exiting", name, result.iteration)
            trainer.request_stop(f"{name} received")

    def on_end(self, trainer: Trainer) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
