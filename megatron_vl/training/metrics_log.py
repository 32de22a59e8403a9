"""Training metrics to the console, TensorBoard and a JSONL file (rank 0 writes; every rank computes).

Every ``Trainer.log_metrics`` event reaches ``on_metrics``. ``LOG_DIR/metrics.jsonl`` gets one line per event:
per step (``"event": "train"``: iteration, loss, grad norm, LR per module, tokens/s, FLOPs, MFU where the
accelerator's peak is known, consumed tokens, loss tokens per kind), per evaluation (``"event": "eval"``:
iteration, loss, loss tokens) and per benchmark scoring (``"event": "benchmark"``: iteration, ``scores``
``{"<file>/<metric>": score}``, rows per file, seconds; shown at once on the console and in TensorBoard as
``benchmark/<file>/<metric>``). The console and TensorBoard get the average over each ``log_every`` window
of steps (and the last, shorter window when the run ends). On resume, lines and TensorBoard events after
the resumed iteration (written by the interrupted run) are dropped, so both show the history the
checkpoints hold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from megatron_vl.training.metrics_file import METRICS_FILE
from megatron_vl.training.trainer import Hook, Metrics, Trainer

logger = logging.getLogger(__name__)


def _short(count: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count:.0f}"


class MetricsLog(Hook):
    priority = 100

    def __init__(
        self, log_dir: str, *, log_every: int, peak_flops: float | None, world_size: int, writer: bool
    ) -> None:
        """``peak_flops``: of one accelerator, the MFU denominator (None: unknown, no MFU). ``writer``: this rank
        writes the files and prints (rank 0); others only take part."""
        self.log_dir = Path(log_dir)
        self.log_every = log_every
        self.peak_flops = peak_flops
        self.world_size = world_size
        self.writer = writer
        self._file = None
        self._tensorboard = None
        self._window: list[dict] = []

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

    def on_metrics(self, trainer: Trainer, metrics: Metrics) -> None:
        if not self.writer:
            return
        values = dict(metrics.values)
        if metrics.event == "train":
            mfu = self._mfu([values])
            if mfu is not None:
                values["mfu"] = mfu
        self._write({"event": metrics.event, "iteration": metrics.iteration, **values})
        if metrics.event == "train":
            self._window.append({"iteration": metrics.iteration, **values})
            if metrics.iteration % self.log_every == 0 or trainer.done:
                self._report(trainer)
        elif metrics.event == "eval":
            logger.info(
                "eval at iter %d | loss %.4f over %d tokens | %.1f s",
                metrics.iteration, values["loss"], values["loss_tokens"], values["seconds"],
            )
            self._tensorboard.add_scalar("eval/loss", values["loss"], metrics.iteration)
            self._tensorboard.flush()
        elif metrics.event == "benchmark":
            scores = " | ".join(f"{name.replace('/', ' ')} {score:.3f}" for name, score in values["scores"].items())
            logger.info("benchmark at iter %d | %s | %.1f s", metrics.iteration, scores, values["seconds"])
            for name, score in values["scores"].items():
                self._tensorboard.add_scalar(f"benchmark/{name}", score, metrics.iteration)
            self._tensorboard.flush()

    def _mfu(self, steps: list[dict]) -> float | None:
        if self.peak_flops is None:
            return None
        seconds = sum(step["seconds"] for step in steps)
        return sum(step["flops"] for step in steps) / (seconds * self.peak_flops * self.world_size)

    def _report(self, trainer: Trainer) -> None:
        window, self._window = self._window, []
        last = window[-1]
        loss = sum(step["loss"] for step in window) / len(window)
        tokens_per_second = sum(step["tokens"] for step in window) / sum(step["seconds"] for step in window)
        mfu = self._mfu(window)
        skipped = sum(step["update_skipped"] for step in window)
        kinds = " ".join(f"{kind} {_short(count)}" for kind, count in last["loss_tokens_per_kind"].items())
        lrs = " ".join(f"{module} {lr:.2e}" for module, lr in last["lr"].items())
        logger.info(
            "iter %d/%d | loss %.4f | grad norm %.3f | lr %s | %s tok/s%s | consumed %s tokens | loss tokens: %s%s",
            last["iteration"], trainer.train_iterations, loss, last["grad_norm"], lrs, _short(tokens_per_second),
            "" if mfu is None else f" | MFU {100 * mfu:.2f}%", _short(last["consumed_tokens"]), kinds,
            f" | {skipped} updates skipped" if skipped else "",
        )
        board, step = self._tensorboard, last["iteration"]
        board.add_scalar("train/loss", loss, step)
        board.add_scalar("train/grad_norm", last["grad_norm"], step)
        board.add_scalar("throughput/tokens_per_second", tokens_per_second, step)
        if mfu is not None:
            board.add_scalar("throughput/mfu", mfu, step)
        board.add_scalar("progress/consumed_tokens", last["consumed_tokens"], step)
        for module, lr in last["lr"].items():
            board.add_scalar(f"lr/{module}", lr, step)
        for kind, count in last["loss_tokens_per_kind"].items():
            board.add_scalar(f"loss_tokens/{kind}", count, step)
        board.flush()

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def on_end(self, trainer: Trainer) -> None:
        if self._file is None:
            return
        if self._window:
            self._report(trainer)
        self._file.close()
        self._tensorboard.close()
        self._file = self._tensorboard = None
