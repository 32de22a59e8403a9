"""The training loop: steps of megatron's forward-backward schedule and the optimizer, with hooks.

The loop knows nothing of the model: it runs the model step (``ModelStep``) through megatron's schedule (no
pipelining, or 1F1B over the pipeline group) on the data iterator, steps the optimizer and the LR schedule,
and hands each step to its hooks.

The hook contract:

* ``run()`` calls every hook's ``on_start`` in priority order, then per step first ``log_metrics("train", ...)``
  and then every hook's ``after_step``; it calls the ``on_end`` of every hook that started, in reverse order,
  also when a step or another hook raised (an ``ExitStack``), so signal handlers are restored, profilers
  stopped and files closed whatever happens.
* Hooks run in increasing ``priority`` (ties keep the order given). The hooks of a stage: metrics (100),
  evaluation (200), profiling (300), stop on signal (400), checkpoints (500), benchmark scores (600): the step
  where every rank agreed to stop is known before the checkpoint hook decides to save it, and the benchmarks
  score the checkpoint it saved.
* Metrics reach hooks through one fan-out: ``trainer.log_metrics(event, iteration, values)`` calls every
  hook's ``on_metrics`` (the metrics log writes them; an evaluation hook produces them).
* A hook stops the run with ``trainer.request_stop(reason)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import Counter
from typing import Iterable, Iterator, Protocol

import torch
import torch.distributed as dist
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_vl.training.parallelize import TrainableModel

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainState:
    """Progress of the stage; saved in every checkpoint and restored on resume."""

    iteration: int = 0
    """Optimizer steps done."""
    consumed_tokens: int = 0
    """Token positions trained on (global batch x sequence length per step; padding and images included)."""
    loss_tokens_per_kind: dict[str, int] = dataclasses.field(default_factory=dict)
    """Tokens in the loss so far, per data kind."""


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one optimizer step did, the same on every rank."""

    iteration: int
    """The step's number (1 for the first step of a stage)."""
    loss: float
    """Mean loss over the loss tokens of the global batch."""
    loss_tokens: int
    """Loss tokens of the global batch."""
    grad_norm: float
    """Global gradient L2 norm before clipping."""
    learning_rates: dict[str, float]
    """LR of each trained module during the step."""
    seconds: float
    """Wall time of the step, data waiting included."""
    tokens: int
    """Token positions of the global batch."""
    flops: float
    """Model FLOPs of the step over all ranks."""
    loss_tokens_per_kind: dict[str, int]
    """Loss tokens of the global batch per data kind."""
    update_skipped: bool
    """The optimizer skipped the update (non-finite gradients under loss scaling)."""


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Figures of one event, as ``Trainer.log_metrics`` fans them out to the hooks."""

    event: str
    """``train`` (one optimizer step), ``eval`` (held-out loss), ..."""
    iteration: int
    """The step the figures belong to."""
    values: dict
    """Name -> JSON-able value."""


class Hook:
    """Called by the trainer; override what you need (see the module docstring for the contract)."""

    priority: int = 0
    """Hooks run in increasing priority; their ends in the reverse order."""

    def on_start(self, trainer: "Trainer") -> None:
        pass

    def after_step(self, trainer: "Trainer", result: StepResult) -> None:
        pass

    def on_metrics(self, trainer: "Trainer", metrics: Metrics) -> None:
        pass

    def on_end(self, trainer: "Trainer") -> None:
        pass


class ModelStep(Protocol):
    """What the trainer runs a micro-batch with; the only part of training that knows the model."""

    def train_forward(self, data_iterator: Iterator, model: torch.nn.Module):
        """megatron's ``forward_step_func`` for training: counts the micro-batch into ``stats``."""

    def eval_forward(self, data_iterator: Iterator, model: torch.nn.Module):
        """The same for evaluation, counting nothing."""

    def stats(self) -> dict:
        """Since the last call (then reset): ``{"flops": float, "loss_tokens": {kind: n}}`` of training micro-batches."""


class Trainer:
    def __init__(
        self,
        *,
        trainable: TrainableModel,
        model_step: ModelStep,
        loader: Iterable,
        micro_batches_per_step: int,
        micro_batch_tokens: int,
        tokens_per_step: int,
        train_iterations: int,
        pg_collection: ProcessGroupCollection,
        device: torch.device,
        hooks: list[Hook] = (),
    ) -> None:
        """``loader`` yields this rank's micro-batches forever, ``micro_batches_per_step`` per step, each of
        ``micro_batch_tokens`` tokens (the pipeline's activation length)."""
        self.trainable = trainable
        self.model_step = model_step
        self.loader = loader
        self.micro_batches_per_step = micro_batches_per_step
        self.micro_batch_tokens = micro_batch_tokens
        self.tokens_per_step = tokens_per_step
        self.train_iterations = train_iterations
        self.pg_collection = pg_collection
        self.device = device
        self.hooks = sorted(hooks, key=lambda hook: hook.priority)
        self.state = TrainState()
        self.stop_reason: str | None = None
        self._forward_backward = get_forward_backward_func(pp_size=pg_collection.pp.size())
        self._schedule_kwargs = {}
        if pg_collection.pp.size() > 1:
            self._schedule_kwargs["p2p_communicator"] = P2PCommunicator(pg_collection.pp, trainable.model.config)

    @property
    def done(self) -> bool:
        return self.state.iteration >= self.train_iterations

    def request_stop(self, reason: str) -> None:
        """End the run after the current step's hooks (every rank must request it at the same step)."""
        self.stop_reason = self.stop_reason or reason

    def run(self) -> None:
        with contextlib.ExitStack() as started:
            for hook in self.hooks:
                hook.on_start(self)
                started.callback(hook.on_end, self)
            batches = iter(self.loader)
            while not self.done and self.stop_reason is None:
                result = self.train_step(batches)
                self.log_metrics("train", result.iteration, self._train_metrics(result))
                for hook in self.hooks:
                    hook.after_step(self, result)

    def log_metrics(self, event: str, iteration: int, values: dict) -> None:
        """Hand figures of ``event`` to every hook (every rank calls it; the metrics log writes on rank 0)."""
        metrics = Metrics(event, iteration, values)
        for hook in self.hooks:
            hook.on_metrics(self, metrics)

    def _train_metrics(self, result: StepResult) -> dict:
        state = self.state
        return {
            "loss": result.loss,
            "loss_tokens": result.loss_tokens,
            "grad_norm": result.grad_norm,
            "lr": result.learning_rates,
            "seconds": result.seconds,
            "tokens": result.tokens,
            "tokens_per_second": result.tokens / result.seconds,
            "flops": result.flops,
            "consumed_tokens": state.consumed_tokens,
            "loss_tokens_per_kind": state.loss_tokens_per_kind,
            "update_skipped": result.update_skipped,
        }

    def train_step(self, batches: Iterator) -> StepResult:
        trainable = self.trainable
        start = time.perf_counter()
        lrs = trainable.learning_rates()
        outputs = self.forward_backward(batches)
        updated, grad_norm, _ = trainable.optimizer.step()
        if updated:
            trainable.scheduler.step(increment=1)
        loss_sum, loss_tokens = self.global_loss(outputs)
        flops, kinds = self._gather_stats()
        state = self.state
        state.iteration += 1
        state.consumed_tokens += self.tokens_per_step
        state.loss_tokens_per_kind = dict(Counter(state.loss_tokens_per_kind) + Counter(kinds))
        return StepResult(
            iteration=state.iteration,
            loss=loss_sum / max(loss_tokens, 1),
            loss_tokens=loss_tokens,
            grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
            learning_rates=lrs,
            seconds=time.perf_counter() - start,
            tokens=self.tokens_per_step,
            flops=flops,
            loss_tokens_per_kind=kinds,
            update_skipped=not updated,
        )

    def forward_backward(self, batches: Iterator) -> list:
        """One step's micro-batches forward and backward, gradients finalised (reduced over DP, divided by
        the global batch's loss tokens) in the main grads; returns the last stage's loss logs."""
        for chunk in self.trainable.chunks:
            chunk.zero_grad_buffer()
        self.trainable.optimizer.zero_grad()
        return self._schedule(self.model_step.train_forward, batches, self.micro_batches_per_step, forward_only=False)

    def evaluate(self, batches: Iterable, num_micro_batches: int) -> tuple[float, int]:
        """Mean loss over the loss tokens of ``batches`` (this rank's share of a held-out set) and the
        token count, over all data-parallel ranks."""
        for chunk in self.trainable.chunks:
            chunk.eval()
        try:
            with torch.no_grad():
                outputs = self._schedule(self.model_step.eval_forward, iter(batches), num_micro_batches, forward_only=True)
        finally:
            for chunk in self.trainable.chunks:
                chunk.train()
        loss_sum, loss_tokens = self.global_loss(outputs)
        return loss_sum / max(loss_tokens, 1), loss_tokens

    def _schedule(self, forward_step, batches: Iterator, num_micro_batches: int, *, forward_only: bool) -> list:
        return self._forward_backward(
            forward_step_func=forward_step,
            data_iterator=batches,
            model=self.trainable.chunks,
            num_microbatches=num_micro_batches,
            seq_length=self.micro_batch_tokens,
            micro_batch_size=1,
            forward_only=forward_only,
            pg_collection=self.pg_collection,
            **self._schedule_kwargs,
        )

    def global_loss(self, outputs: list) -> tuple[float, int]:
        """Sum of the loss and the loss-token count over all micro-batches and DP x CP ranks (last stage's
        values, shared with every pipeline stage; each CP rank's are those of the tokens it holds)."""
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for output in outputs:
            totals += output["loss"].to(totals)
        dist.all_reduce(totals, group=self.pg_collection.pp)
        dist.all_reduce(totals, group=self.pg_collection.dp_cp)
        loss_sum, loss_tokens = totals.tolist()
        return loss_sum, int(loss_tokens)

    def _gather_stats(self) -> tuple[float, dict[str, int]]:
        """This step's FLOPs and loss tokens per kind, summed over the data-parallel replicas (the CP ranks of a
        replica count the same whole micro-batches, so the sum is over DP only)."""
        gathered = [None] * self.pg_collection.dp.size()
        dist.all_gather_object(gathered, self.model_step.stats(), group=self.pg_collection.dp)
        kinds = Counter()
        for stats in gathered:
            kinds.update(stats["loss_tokens"])
        return sum(stats["flops"] for stats in gathered), dict(sorted(kinds.items()))
