"""A ``torch.profiler`` trace of a range of steps, one Chrome trace per rank in the log folder."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)


class ProfileHook(Hook):
    """Records steps ``first`` to ``last`` (inclusive) into ``LOG_DIR/profile_rank<R>.json``, with the GPU's
    kernels when ``on_gpu``."""

    priority = 300

    def __init__(self, first: int, last: int, log_dir: str, rank: int, *, on_gpu: bool) -> None:
        self.first, self.last = first, last
        self.on_gpu = on_gpu
        self.path = Path(log_dir) / f"profile_rank{rank}.json"
        self._profiler = None

    def on_start(self, trainer: Trainer) -> None:
        self._maybe_start(trainer.state.iteration + 1)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if self._profiler is not None and result.iteration >= self.last:
            self._stop()
        self._maybe_start(result.iteration + 1)

    def on_end(self, trainer: Trainer) -> None:
        if self._profiler is not None:
            self._stop()

    def _maybe_start(self, next_iteration: int) -> None:
        if self._profiler is None and next_iteration == self.first:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.on_gpu:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._profiler = torch.profiler.profile(activities=activities, record_shapes=True)
            self._profiler.__enter__()

    def _stop(self) -> None:
        self._profiler.__exit__(None, None, None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._profiler.export_chrome_trace(str(self.path))
        logger.info("profile of steps %d-%d written to %s", self.first, self.last, self.path)
        self._profiler = None
