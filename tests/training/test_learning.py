"""The demo curriculum learns: stage 3 of ``tiny`` (everything trains, DP=2 on 2 CPU ranks) from random
weights, on the test packs of captions and interleaved documents, brings the training and held-out losses
well below their starting values."""

import math

from megatron_vl.config.model import tiny
from tests.training import torchrun

STAGE = "stage3_multimodal"
ITERATIONS = 20
BATCH = 8


def test_tiny_stage3_loss_falls(data_root, tmp_path):
    torchrun.run(
        stage=STAGE, nproc=2, data_root=data_root, checkpoint_root=tmp_path,
        overrides=(
            'blend=[{"kind": "caption", "weight": 1}, {"kind": "interleaved", "weight": 1}]',
            f"global_batch_size={BATCH}", f"train_tokens={ITERATIONS * BATCH * 128}",
            f"eval.every={ITERATIONS // 2}", f"checkpoint.save_every={ITERATIONS}",
        ),
        extra_args=("--init-from", "none"),
    )
    losses = [loss for _, (loss, _) in sorted(torchrun.losses(tmp_path, STAGE).items())]
    assert len(losses) == ITERATIONS
    # A random model starts near ln(vocab) of the tiny preset's 4096-entry output layer.
    assert abs(losses[0] - math.log(tiny(image_token_id=0, video_token_id=1).language.vocab_size)) < 0.5, losses
    first, middle, last = losses[0], sum(losses[8:12]) / 4, sum(losses[-4:]) / 4
    assert last < middle < first and last < first - 1.0, losses
    evals = torchrun.eval_losses(tmp_path, STAGE)
    assert sorted(evals) == [ITERATIONS // 2, ITERATIONS]
    assert evals[ITERATIONS] < evals[ITERATIONS // 2] < first - 0.5 and evals[ITERATIONS] < first - 1.0, evals
