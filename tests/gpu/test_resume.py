"""On one GPU, through the training entry point: the distributed optimizer saves and resumes bit for bit after a
kill -9.

Bit for bit on a GPU needs deterministic kernels: the runs set ``NVTE_ALLOW_NONDETERMINISTIC_ALGO=0`` (Transformer
Engine's attention backward) and ``CUBLAS_WORKSPACE_CONFIG``.
"""

from __future__ import annotations

import pytest

from tests.gpu.one_device import ONE_DEVICE, steps
from tests.training import torchrun

DETERMINISTIC = {"NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


@pytest.fixture
def deterministic(monkeypatch):
    for name, value in DETERMINISTIC.items():
        monkeypatch.setenv(name, value)


def test_distributed_optimizer_resumes_bit_for_bit_after_kill9(data_root, tmp_path, deterministic):
    stage = "stage3_multimodal"
    overrides = (*ONE_DEVICE, steps(6), "checkpoint.save_every=2", "optimizer.distributed=true")
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
