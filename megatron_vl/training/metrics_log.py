"""Training metrics to the console, TensorBoard and a JSONL file (rank 0 writes; every rank computes).

``LOG_DIR/metrics.jsonl`` gets one line per step (``"event": "train"``: iteration, loss, grad norm, LR per
module, tokens/s, MFU, consumed tokens, loss tokens per kind) and one per evaluation (``"event": "eval"``:
iteration, loss, loss tokens).
The console and TensorBoard get the average over each ``log_every`` window. On resume, lines and
TensorBoard events after the resumed iteration (written by the interrupted run) are dropped, so both
show the history the checkpoints hold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from megatron_vl.training.metrics_file import METRICS_FILE
from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)


def _short(count: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count:.0f}"


class MetricsLog(Hook):
    def __init__(self, log_dir: str, *, log_every: int, peak_flops: float, world_size: int, writer: bool) -> None:
        """``writer``: this rank writes the files and prints (rank 0); others only take part."""
        self.log_dir = Path(log_dir)
        self.log_every = log_every
        self.peak_flops = peak_flops
        self.world_size = world_size
        self.writer = writer
        self._file = None
        self._tensorboard = None
        self._window: list[StepResult] = []

    def on_start(self, trainer: Trainer) -> None:
        if not self.writer:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        start = trainer.state.iteration
        path = self.log_dir / METRICS_FILE
        if path.is_file():
            lines = path.read_text().splitlines()
            kept = [line for line in lines if line.strip() and json.loads(line)["iteration"] <= start]
            if len(kept) != len(lines):
                logger.info("%s: dropping %d records after iteration %d (not in a checkpoint)", path, len(lines) - len(kept), start)
                path.write_text("".join(line + "\n" for line in kept))
        self._file = open(path, "a")
        from torch.utils.tensorboard import SummaryWriter

        self._tensorboard = SummaryWriter(str(self.log_dir), purge_step=start + 1)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if not self.writer:
            return
        state = trainer.state
        self._write({
            "event": "train",
            "iteration": result.iteration,
            "loss": result.loss,
            "loss_tokens": result.loss_tokens,
            "grad_norm": result.grad_norm,
            "lr": result.learning_rates,
            "seconds": result.seconds,
            "tokens_per_second": result.tokens / result.seconds,
            "mfu": self._mfu([result]),
            "consumed_tokens": state.consumed_tokens,
            "loss_tokens_per_kind": state.loss_tokens_per_kind,
            "update_skipped": result.update_skipped,
        })
        self._window.append(result)
        if result.iteration % self.log_every == 0 or trainer.done or trainer.stop_reason is not None:
            self._report(trainer)

    def _mfu(self, results: list[StepResult]) -> float:
        seconds = sum(result.seconds for result in results)
        return sum(result.flops for result in results) / (seconds * self.peak_flops * self.world_size)

    def _report(self, trainer: Trainer) -> None:
        window, self._window = self._window, []
        last = window[-1]
        loss = sum(result.loss for result in window) / len(window)
        tokens_per_second = sum(result.tokens for result in window) / sum(result.seconds for result in window)
        mfu = self._mfu(window)
        skipped = sum(result.update_skipped for result in window)
        kinds = " ".join(f"{kind} {_short(count)}" for kind, count in trainer.state.loss_tokens_per_kind.items())
        lrs = " ".join(f"{module} {lr:.2e}" for module, lr in last.learning_rates.items())
        logger.info(
            "iter %d/%d | loss %.4f | grad norm %.3f | lr %s | %s tok/s | MFU %.2f%% | consumed %s tokens | "
            "loss tokens: %s%s",
            last.iteration, trainer.train_iterations, loss, last.grad_norm, lrs, _short(tokens_per_second),
            100 * mfu, _short(trainer.state.consumed_tokens), kinds, f" | {skipped} updates skipped" if skipped else "",
        )
        board, step = self._tensorboard, last.iteration
        board.add_scalar("train/loss", loss, step)
        board.add_scalar("train/grad_norm", last.grad_norm, step)
        board.add_scalar("throughput/tokens_per_second", tokens_per_second, step)
        board.add_scalar("throughput/mfu", mfu, step)
        board.add_scalar("progress/consumed_tokens", trainer.state.consumed_tokens, step)
        for module, lr in last.learning_rates.items():
            board.add_scalar(f"lr/{module}", lr, step)
        for kind, count in trainer.state.loss_tokens_per_kind.items():
            board.add_scalar(f"loss_tokens/{kind}", count, step)
        board.flush()

    def write_eval(self, iteration: int, loss: float, tokens: int, seconds: float) -> None:
        if not self.writer:
            return
        self._write({"event": "eval", "iteration": iteration, "loss": loss, "loss_tokens": tokens, "seconds": seconds})
        logger.info("eval at iter %d | loss %.4f over %d tokens | %.1f s", iteration, loss, tokens, seconds)
        self._tensorboard.add_scalar("eval/loss", loss, iteration)
        self._tensorboard.flush()

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def on_end(self, trainer: Trainer) -> None:
        if self._file is not None:
            self._file.close()
            self._tensorboard.close()
            self._file = self._tensorboard = None
