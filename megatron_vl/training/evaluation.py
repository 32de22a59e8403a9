"""The held-out loss every N iterations and at the end of the stage, logged through ``Trainer.log_metrics``."""

from __future__ import annotations

import time

from megatron_vl.data.eval_loader import EvalLoader
from megatron_vl.training.trainer import Hook, StepResult, Trainer


class EvalHook(Hook):
    priority = 200

    def __init__(self, loader: EvalLoader, every: int) -> None:
        self.loader = loader
        self.every = every

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.iteration % self.every == 0 or trainer.done:
            start = time.perf_counter()
            loss, tokens = trainer.evaluate(self.loader, len(self.loader))
            trainer.log_metrics(
                "eval", result.iteration, {"loss": loss, "loss_tokens": tokens, "seconds": time.perf_counter() - start}
            )
