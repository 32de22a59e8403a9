"""The held-out loss every N iterations and at the end of the stage."""

from __future__ import annotations

import logging
import time

from megatron_vl.data.eval_loader import EvalLoader
from megatron_vl.training.metrics_log import MetricsLog
from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)


class EvalHook(Hook):
    def __init__(self, loader: EvalLoader, every: int, metrics: MetricsLog) -> None:
        self.loader = loader
        self.every = every
        self.metrics = metrics

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.iteration % self.every == 0 or trainer.done:
            start = time.perf_counter()
            loss, tokens = trainer.evaluate(self.loader, len(self.loader))
            self.metrics.write_eval(result.iteration, loss, tokens, time.perf_counter() - start)
