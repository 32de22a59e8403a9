"""The trainer's hook contract (order by priority, metrics fan-out, every end in a ``finally``) and the model
step's statistics (evaluation counts no FLOPs), without ranks: the optimizer step is replaced by a stub."""

import types

import pytest
import torch

from megatron_vl.config.model import tiny
from megatron_vl.data.batch import VLBatch
from megatron_vl.training.model_step import VLModelStep
from megatron_vl.training.trainer import Hook, StepResult, Trainer


class Recorder(Hook):
    def __init__(self, name: str, priority: int, calls: list, fail_on: str | None = None) -> None:
        self.name, self.priority, self.calls, self.fail_on = name, priority, calls, fail_on

    def _record(self, event: str) -> None:
        self.calls.append((self.name, event))
        if event == self.fail_on:
            raise RuntimeError(f"{self.name} failed in {event}")

    def on_start(self, trainer):
        self._record("start")

    def after_step(self, trainer, result):
        self._record(f"step {result.iteration}")

    def on_metrics(self, trainer, metrics):
        self._record(f"{metrics.event} {metrics.iteration}")

    def on_end(self, trainer):
        self._record("end")


class StubTrainer(Trainer):
    """A trainer whose steps are stubbed out (a step raises at ``fail_at``)."""

    fail_at: int | None = None

    def train_step(self, batches):
        self.state.iteration += 1
        if self.state.iteration == self.fail_at:
            raise RuntimeError("step failed")
        return StepResult(
            iteration=self.state.iteration, loss=1.0, loss_tokens=4, grad_norm=0.5, learning_rates={"language": 1e-3},
            seconds=0.5, tokens=8, flops=2.0, loss_tokens_per_kind={"text": 4}, update_skipped=False,
        )


def _trainer(hooks, iterations=2) -> StubTrainer:
    groups = types.SimpleNamespace(pp=types.SimpleNamespace(size=lambda: 1))
    return StubTrainer(
        trainable=None, model_step=None, loader=[], micro_batches_per_step=1, micro_batch_tokens=8, tokens_per_step=8,
        train_iterations=iterations, pg_collection=groups, device=torch.device("cpu"), hooks=hooks,
    )


def test_hooks_run_by_priority_metrics_first_and_end_in_reverse():
    calls = []
    trainer = _trainer([Recorder("checkpoint", 500, calls), Recorder("metrics", 100, calls), Recorder("signals", 400, calls)])
    trainer.run()
    assert calls[:3] == [("metrics", "start"), ("signals", "start"), ("checkpoint", "start")]
    assert calls[3:9] == [
        ("metrics", "train 1"), ("signals", "train 1"), ("checkpoint", "train 1"),
        ("metrics", "step 1"), ("signals", "step 1"), ("checkpoint", "step 1"),
    ]
    assert calls[-3:] == [("checkpoint", "end"), ("signals", "end"), ("metrics", "end")]


def test_every_started_hook_ends_when_a_step_raises():
    calls = []
    trainer = _trainer([Recorder("a", 1, calls), Recorder("b", 2, calls)], iterations=5)
    trainer.fail_at = 2
    with pytest.raises(RuntimeError, match="step failed"):
        trainer.run()
    assert calls[-2:] == [("b", "end"), ("a", "end")]


def test_an_end_that_raises_does_not_skip_the_others():
    calls = []
    trainer = _trainer([Recorder("a", 1, calls), Recorder("b", 2, calls, fail_on="end")])
    with pytest.raises(RuntimeError, match="b failed in end"):
        trainer.run()
    assert calls[-2:] == [("b", "end"), ("a", "end")]


def test_a_hook_that_fails_to_start_ends_the_started_ones_only():
    calls = []
    trainer = _trainer([Recorder("a", 1, calls), Recorder("b", 2, calls, fail_on="start"), Recorder("c", 3, calls)])
    with pytest.raises(RuntimeError, match="b failed in start"):
        trainer.run()
    assert calls == [("a", "start"), ("b", "start"), ("a", "end")]


def test_log_metrics_reaches_every_hook():
    calls = []
    trainer = _trainer([Recorder("a", 1, calls), Recorder("b", 2, calls)])
    trainer.log_metrics("eval", 7, {"loss": 1.5})
    assert calls == [("a", "eval 7"), ("b", "eval 7")]


def _batch(video_grids: list[tuple[int, int, int]] = ()) -> VLBatch:
    grids = torch.tensor(video_grids, dtype=torch.int64).reshape(-1, 3)
    return VLBatch(
        tokens=torch.ones(1, 8, dtype=torch.int64), labels=torch.ones(1, 8, dtype=torch.int64),
        loss_mask=torch.ones(1, 8), position_ids=torch.zeros(3, 1, 8, dtype=torch.int64),
        cu_seqlens=torch.tensor([0, 8], dtype=torch.int32), max_seqlen=8, pixel_values=torch.zeros(0, 1176),
        image_grid_thw=torch.zeros(0, 3, dtype=torch.int64), pixel_values_videos=torch.zeros(int(grids.prod(-1).sum()), 1176),
        video_grid_thw=grids, second_per_grid_ts=torch.ones(len(grids)), loss_tokens_per_kind={"text": 8},
        sample_ids=[(0, 0)],
    )


def test_evaluation_counts_no_flops_and_no_loss_tokens():
    step = VLModelStep(tiny(image_token_id=5, video_token_id=6), {"vision": False, "projector": False, "language": False}, torch.device("cpu"))
    model = lambda *args, **kwargs: torch.zeros(1, 8)  # noqa: E731 - the per-token loss of a stand-in model
    step.eval_forward(iter([_batch()]), model)
    assert step.stats() == {"flops": 0.0, "loss_tokens": {}}
    step.train_forward(iter([_batch()]), model)
    stats = step.stats()
    assert stats["flops"] > 0 and stats["loss_tokens"] == {"text": 8}


def test_train_step_hands_videos_to_the_model_and_counts_their_vit_flops():
    step = VLModelStep(tiny(image_token_id=5, video_token_id=6), {"vision": False, "projector": False, "language": False}, torch.device("cpu"))
    calls = []
    model = lambda *args, **kwargs: calls.append(kwargs) or torch.zeros(1, 8)  # noqa: E731 - records its inputs
    step.train_forward(iter([_batch()]), model)
    text_flops = step.stats()["flops"]
    batch = _batch(video_grids=[(2, 4, 4)])
    step.train_forward(iter([batch]), model)
    assert step.stats()["flops"] > text_flops
    assert calls[1]["pixel_values_videos"].shape == (32, 1176)
    assert calls[1]["video_grid_thw"].tolist() == [[2, 4, 4]]
