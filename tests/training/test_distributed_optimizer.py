"""megatron's distributed optimizer (over torch's AdamW on CPU) through the training entry point: stage 2 at its
tiny layout, DP=2 on 2 ranks, 4 iterations, checkpoints every 2, from a model-only checkpoint. Killed with
SIGKILL after its first checkpoint and resumed, it ends bit for bit where the uninterrupted run ends; its
DP=2 checkpoint resumes at TP=2 (DP=1), the optimizer state resharded, and continues the run.
"""

import shutil

import pytest
import torch

from megatron_vl.training import checkpoint_files
from tests.models.vl_batches import tiny_config
from tests.training import torchrun
from tests.training.init_checkpoint import checkpoint_tensors

STAGE = "stage2_vit"
ITERATIONS = 4
BATCH = 4
OVERRIDES = (f"global_batch_size={BATCH}", f"train_tokens={ITERATIONS * BATCH * 128}", "checkpoint.save_every=2",
             "eval.every=null")


def _stage(data_root, init_checkpoint, checkpoint_root, overrides=()):
    return dict(stage=STAGE, nproc=2, data_root=data_root, checkpoint_root=checkpoint_root,
                overrides=(*OVERRIDES, *overrides), extra_args=("--init-from", str(init_checkpoint)))


@pytest.fixture(scope="module")
def reference(data_root, init_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    torchrun.run(**_stage(data_root, init_checkpoint, root))
    return root


@pytest.fixture(scope="module")
def interrupted(data_root, init_checkpoint, tmp_path_factory):
    """Killed (every process, SIGKILL) once its first checkpoint exists, then resumed to the end; a copy of
    the checkpoints at the kill is kept for the resume at TP=2."""
    root = tmp_path_factory.mktemp("interrupted")
    run = _stage(data_root, init_checkpoint, root)
    process = torchrun.start(**run)
    torchrun.wait_for(lambda: torchrun.latest(root, STAGE) is not None, process, what="the first checkpoint")
    torchrun.kill_all(process)
    killed_at = torchrun.latest(root, STAGE)
    copy = tmp_path_factory.mktemp("tp2")
    shutil.copytree(root / STAGE, copy / STAGE)
    torchrun.run(**run)
    return dict(root=root, killed_at=killed_at, copy=copy)


def _final_checkpoint(root):
    return checkpoint_tensors(checkpoint_files.iteration_dir(root / STAGE, ITERATIONS))


def test_the_stage_runs_the_distributed_optimizer(reference):
    common = torch.load(checkpoint_files.iteration_dir(reference / STAGE, ITERATIONS) / "common.pt", weights_only=False)
    assert common["optimizer"]["param_state_sharding_type"] == "fully_reshardable"


def test_kill9_and_resume_give_the_uninterrupted_run_bit_for_bit(reference, interrupted):
    assert 0 < interrupted["killed_at"] < ITERATIONS
    expected = torchrun.losses(reference, STAGE)
    assert sorted(expected) == list(range(1, ITERATIONS + 1))
    assert torchrun.losses(interrupted["root"], STAGE) == expected
    want, got = _final_checkpoint(reference), _final_checkpoint(interrupted["root"])
    assert got.keys() == want.keys()
    assert any(key.startswith("optimizer.state.exp_avg_sq.vision_model.") for key in want)
    for key, tensor in want.items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(got[key], tensor), key


def test_dp2_checkpoint_resumes_at_tp2_and_continues_the_run(data_root, init_checkpoint, reference, interrupted):
    """TP=2 splits the matmuls and sums their partial results, so the continuation matches the DP=2 run to float
    rounding, not bit for bit (3e-8 relative on the losses, under 1e-6 of a tensor's largest element on the final
    weights and optimizer state). The tolerances, 1e-6 on the losses and gradient norms and 1e-5 relative on
    each final weight and moment (or 1e-5 of the tensor's largest element, for elements near zero such as the
    biases, which start at zero), are well inside what a fresh optimizer in place of the resharded state misses
    by: 7e-4 on the last loss, 16% on its gradient norm, most of the moments. The ViT's key biases are left out
    (``_vit_key_bias``): they are rounding noise in both runs."""
    copy, killed_at = interrupted["copy"], interrupted["killed_at"]
    torchrun.run(**_stage(data_root, init_checkpoint, copy, ("parallel.tensor_parallel=2",)))
    assert "resuming at another layout" in (copy / f"{STAGE}.log").read_text()
    expected, resumed = torchrun.losses(reference, STAGE), torchrun.losses(copy, STAGE)
    assert sorted(resumed) == list(range(killed_at + 1, ITERATIONS + 1))
    for iteration in resumed:
        assert resumed[iteration] == pytest.approx(expected[iteration], rel=1e-6), iteration
    want, got = _final_checkpoint(reference), _final_checkpoint(copy)
    keys = [key for key, tensor in want.items() if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()]
    assert any(key.startswith("optimizer.state.exp_avg.vision_model.") for key in keys)
    for key in keys:
        kept = ~_vit_key_bias(key, want[key])
        largest = float(want[key].abs().max())
        torch.testing.assert_close(
            got[key][kept], want[key][kept], rtol=1e-5, atol=1e-5 * largest, msg=lambda message: f"{key}: {message}"
        )


def _vit_key_bias(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """True at the key-bias elements of the ViT's fused qkv bias (megatron's layout: per attention head, as the ViT
    has no grouped queries, its query, key and value biases), False elsewhere and for every other tensor.

    The loss barely depends on much of a key bias: after the rotary embedding it adds q·R(position)b to a query's
    logits, and where R turns little across a picture (the ViT's lowest rotary frequencies, 0.01 and 0.001 per
    patch) that term is almost the same for every key, which the softmax ignores. Those gradients are near zero,
    their rounding differs at TP=2 and DP=2, and Adam scales it up to updates of the learning rate's size, so
    those elements of the two runs differ by their whole size (1e-4 of the tensor's largest element here, where
    every other tensor agrees to 1e-6)."""
    if not key.endswith("vision_model.decoder.layers.self_attention.linear_qkv.bias"):
        return torch.zeros_like(tensor, dtype=torch.bool)
    part_of_head = torch.arange(tensor.shape[-1]) // tiny_config().vision.head_dim % 3
    return (part_of_head == 1).expand(tensor.shape)
