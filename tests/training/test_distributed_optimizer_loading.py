"""megatron's distributed optimizer over torch's AdamW resumes exactly, from both checkpoint formats, on 2 gloo
ranks at DP=2: one step, save, one step; a new trainer resumed from the save takes the same second step
bit for bit (a wrong or shared Adam step count changes the bias corrections of that step). A run with the
non-distributed optimizer refuses to resume from that checkpoint."""

import pytest
import torch

from tests.multirank import run_ranks

FORMATS = ("fully_reshardable", "dp_reshardable")
TINY_DP2 = ("seq_len=128", "global_batch_size=4", "num_workers=0", "eval.every=null", "train_tokens=2048")


def _trainer(data_root, root, overrides):
    from megatron_vl.config.overrides import apply_overrides
    from megatron_vl.config.recipe import load_recipe
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import detect_platform
    from megatron_vl.tokenizer import load_tokenizer
    from megatron_vl.training.build import build_trainer
    from megatron_vl.training.run_config import RunPaths, resolve_run

    recipe = apply_overrides(load_recipe("stage2_vit", "tiny"), [*TINY_DP2, *overrides])
    paths = RunPaths(data_root=str(data_root), checkpoint_root=str(root), log_root=str(root / "logs"),
                     tokenizer=str(data_root / "tokenizer"))
    tokenizer = load_tokenizer(paths.tokenizer)
    run = resolve_run(recipe, paths, tokenizer, detect_platform())
    pgs = initialize_model_parallel(run.recipe.parallel)
    set_seed(run.recipe.seed, pgs)
    return build_trainer(run, tokenizer, pgs)


def _parameters(trainer) -> list[torch.Tensor]:
    return [param.detach().clone() for param in trainer.trainable.model.parameters()]


def _second_step_twice(data_root, root) -> dict:
    from megatron.core.optimizer import DistributedOptimizer

    results = {}
    for checkpoint_format in FORMATS:
        overrides = (f"optimizer.checkpoint_format={checkpoint_format}",)
        trainer, checkpointer = _trainer(data_root, root / checkpoint_format, overrides)
        assert isinstance(trainer.trainable.optimizer.chained_optimizers[0], DistributedOptimizer)
        batches = iter(trainer.loader)
        trainer.train_step(batches)
        checkpointer.save(trainer)
        uninterrupted = trainer.train_step(batches).loss, _parameters(trainer)

        resumed, checkpointer = _trainer(data_root, root / checkpoint_format, overrides)
        assert checkpointer.resume(resumed)
        again = resumed.train_step(iter(resumed.loader)).loss, _parameters(resumed)
        results[checkpoint_format] = (uninterrupted, again)

    non_distributed, checkpointer = _trainer(data_root, root / FORMATS[0], ("optimizer.distributed=false",))
    with pytest.raises(ValueError) as refusal:
        checkpointer.resume(non_distributed)
    results["refusal"] = str(refusal.value)
    return results


@pytest.fixture(scope="module")
def second_steps(data_root, tmp_path_factory):
    return run_ranks(_second_step_twice, 2, data_root, tmp_path_factory.mktemp("distributed_optimizer"))


@pytest.mark.parametrize("checkpoint_format", FORMATS)
def test_resumed_step_equals_the_uninterrupted_one_bit_for_bit(second_steps, checkpoint_format):
    for rank in second_steps:
        (loss, parameters), (resumed_loss, resumed_parameters) = rank[checkpoint_format]
        assert resumed_loss == loss
        assert all(torch.equal(a, b) for a, b in zip(resumed_parameters, parameters))


def test_non_distributed_optimizer_refuses_a_distributed_optimizer_checkpoint(second_steps):
    for rank in second_steps:
        assert "holds the state of megatron's distributed optimizer" in rank["refusal"]
        assert "--set optimizer.distributed=true" in rank["refusal"]
