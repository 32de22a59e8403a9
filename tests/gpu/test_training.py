"""On one GPU, through the training entry point (``torchrun --standalone``, bf16 as the GPU run uses it): the
distributed optimizer saves and resumes bit for bit after a kill -9, and the four tiny stages run one after the
other, each from the previous one's checkpoint, stage 1 with its frozen ViT.

Bit for bit on a GPU needs deterministic kernels: the runs set ``NVTE_ALLOW_NONDETERMINISTIC_ALGO=0`` (Transformer
Engine's attention backward) and ``CUBLAS_WORKSPACE_CONFIG``.
"""

from __future__ import annotations

import math

import pytest

from megatron_vl.config.recipe import STAGES
from tests.training import torchrun

ONE_DEVICE = ("parallel.sequence_parallel=false", "parallel.tensor_parallel=1",
              "parallel.first_pipeline_stage_language_layers=null", "parallel.pipeline_parallel=1", "global_batch_size=4",
              "eval.every=null",
              'blend=[{"kind": "caption", "weight": 1}, {"kind": "interleaved", "weight": 1}]')
"""The tiny recipes on one device and the test data root (captions and interleaved documents, 128 tokens)."""
DETERMINISTIC = {"NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def _steps(iterations: int) -> str:
    return f"train_tokens={iterations * 4 * 128}"


@pytest.fixture
def deterministic(monkeypatch):
    for name, value in DETERMINISTIC.items():
        monkeypatch.setenv(name, value)


def test_distributed_optimizer_resumes_bit_for_bit_after_kill9(data_root, tmp_path, deterministic):
    stage = "stage3_multimodal"
    overrides = (*ONE_DEVICE, _steps(6), "checkpoint.save_every=2", "optimizer.distributed=true")
    run = dict(stage=stage, nproc=1, data_root=data_root, overrides=overrides, extra_args=("--init-from", "none"))
    torchrun.run(**run, checkpoint_root=tmp_path / "reference")

    interrupted = tmp_path / "interrupted"
    process = torchrun.start(**run, checkpoint_root=interrupted)
    torchrun.wait_for(lambda: torchrun.latest(interrupted, stage) is not None, process, what="the first checkpoint")
    torchrun.kill_all(process)
    killed_at = torchrun.latest(interrupted, stage)
    torchrun.run(**run, checkpoint_root=interrupted)

    expected = torchrun.losses(tmp_path / "reference", stage)
    assert sorted(expected) == list(range(1, 7)) and 0 < killed_at < 6
    assert torchrun.losses(interrupted, stage) == expected


def test_the_four_tiny_stages_run_one_after_the_other(data_root, tmp_path):
    previous = None
    for stage in STAGES:
        extra = ("--init-from", "none") if previous is None else ()
        torchrun.run(stage=stage, nproc=1, data_root=data_root, checkpoint_root=tmp_path,
                     overrides=(*ONE_DEVICE, _steps(3), "checkpoint.save_every=3"), extra_args=extra)
        losses = torchrun.losses(tmp_path, stage)
        assert sorted(losses) == [1, 2, 3] and all(math.isfinite(loss) for loss, _ in losses.values()), stage
        log = (tmp_path / f"{stage}.log").read_text()
        if previous is not None:
            assert f"new stage: weights from {tmp_path / previous}" in log, stage
        previous = stage
