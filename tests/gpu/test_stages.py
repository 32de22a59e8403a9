"""On one GPU, through the training entry point: the four tiny stages one after the other, each from the previous
one's checkpoint (stage 1 with its frozen ViT), and the model learns across them.

Each stage runs 6 steps and ends with a held-out loss (``eval``, 4 sequences of the data root's held-out pack).
Measured on the CPU rehearsal (training losses of each stage's steps, then its held-out loss):
stage 1 8.66 -> 8.16, held-out 8.28; stage 2 8.15 -> 7.94, 8.12; stage 3 7.97 -> 6.26, 6.28; stage 4 6.14 -> 5.92,
6.08.
"""

from __future__ import annotations

import statistics

from megatron_vl.config.recipe import STAGES
from tests.gpu.one_device import ONE_DEVICE, steps
from tests.training import torchrun

STEPS = 6


def test_the_four_tiny_stages_learn_one_after_the_other(data_root, tmp_path):
    previous, held_out = None, {}
    for stage in STAGES:
        extra = ("--init-from", "none") if previous is None else ()
        overrides = (*ONE_DEVICE, steps(STEPS), f"checkpoint.save_every={STEPS}", f"eval.every={STEPS}")
        torchrun.run(stage=stage, nproc=1, data_root=data_root, checkpoint_root=tmp_path, overrides=overrides,
                     extra_args=extra)
        losses = [loss for _, (loss, _) in sorted(torchrun.losses(tmp_path, stage).items())]
        assert len(losses) == STEPS, stage
        half = STEPS // 2
        assert statistics.mean(losses[half:]) < statistics.mean(losses[:half]), f"{stage}: {losses}"
        held_out[stage] = torchrun.eval_losses(tmp_path, stage)[STEPS]
        log = (tmp_path / f"{stage}.log").read_text()
        if previous is not None:
            assert f"new stage: weights from {tmp_path / previous}" in log, stage
            assert held_out[stage] < held_out[previous], f"held-out loss after each stage: {held_out}"
        previous = stage
