"""The training loop: steps of megatron's forward-backward schedule and the optimizer, with hooks.

The loop knows nothing of the model: it runs ``forward_step`` (the model step) through megatron's
schedule (no pipelining, or 1F1B over the pipeline group) on the data iterator, steps the optimizer
and the LR schedule, and hands each step's result to its hooks (logging, evaluation, checkpoints,
signals). A hook stops the run with ``trainer.request_stop(reason)``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from typing import Callable, Iterable, Iterator

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


class Hook:
    """Called by the trainer; override what you need."""

    def on_start(self, trainer: "Trainer") -> None:
        pass

    def after_step(self, trainer: "Trainer", result: StepResult) -> None:
        pass

    def on_end(self, trainer: "Trainer") -> None:
        pass


class Trainer:
    def __init__(
        self,
        *,
        trainable: TrainableModel,
        forward_step: Callable,
        step_stats: Callable[[], dict],
        loader: Iterable,
        micro_batches_per_step: int,
        micro_batch_tokens: int,
        tokens_per_step: int,
        train_iterations: int,
        pg_collection: ProcessGroupCollection,
        device: torch.device,
        hooks: list[Hook] = (),
    ) -> None:
        """``forward_step(data_iterator, model)`` is megatron's ``forward_step_func``; ``step_stats()``
        returns and resets its ``{"flops": float, "loss_tokens": {kind: n}}`` since the last call.
        ``loader`` yields this rank's micro-batches forever, ``micro_batches_per_step`` per step, each of
        ``micro_batch_tokens`` tokens (the pipeline's activation length)."""
        self.trainable = trainable
        self.forward_step = forward_step
        self.step_stats = step_stats
        self.loader = loader
        self.micro_batches_per_step = micro_batches_per_step
        self.micro_batch_tokens = micro_batch_tokens
        self.tokens_per_step = tokens_per_step
        self.train_iterations = train_iterations
        self.pg_collection = pg_collection
        self.device = device
        self.hooks = list(hooks)
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
        for hook in self.hooks:
            hook.on_start(self)
        batches = iter(self.loader)
        while not self.done and self.stop_reason is None:
            result = self.train_step(batches)
            for hook in self.hooks:
                hook.after_step(self, result)
        for hook in self.hooks:
            hook.on_end(self)

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
        return self._schedule(batches, self.micro_batches_per_step, forward_only=False)

    def evaluate(self, batches: Iterable, num_micro_batches: int) -> tuple[float, int]:
        """Mean loss over the loss tokens of ``batches`` (this rank's share of a held-out set) and the
        token count, over all data-parallel ranks."""
        for chunk in self.trainable.chunks:
            chunk.eval()
        try:
            with torch.no_grad():
                outputs = self._schedule(iter(batches), num_micro_batches, forward_only=True)
        finally:
            for chunk in self.trainable.chunks:
                chunk.train()
        self.step_stats()
        loss_sum, loss_tokens = self.global_loss(outputs)
        return loss_sum / max(loss_tokens, 1), loss_tokens

    def _schedule(self, batches: Iterator, num_micro_batches: int, *, forward_only: bool) -> list:
        return self._forward_backward(
            forward_step_func=self.forward_step,
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
        """Sum of the loss and the loss-token count over all micro-batches and DP ranks (last stage's
        values, shared with every pipeline stage)."""
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for output in outputs:
            totals += output["loss"].to(totals)
        dist.all_reduce(totals, group=self.pg_collection.pp)
        dist.all_reduce(totals, group=self.pg_collection.dp)
        loss_sum, loss_tokens = totals.tolist()
        return loss_sum, int(loss_tokens)

    def _gather_stats(self) -> tuple[float, dict[str, int]]:
        """This step's FLOPs and loss tokens per kind, summed over the data-parallel replicas."""
        gathered = [None] * self.pg_collection.dp.size()
        dist.all_gather_object(gathered, self.step_stats(), group=self.pg_collection.dp)
        kinds = Counter()
        for stats in gathered:
            kinds.update(stats["loss_tokens"])
        return sum(stats["flops"] for stats in gathered), dict(sorted(kinds.items()))
