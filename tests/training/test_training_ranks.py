"""The trainer's pieces on spawned gloo ranks, on real packed micro-batches (different loss-token counts):

* the loss and gradients of a global batch are the same at DP=2, PP=2 and TP=2 with SP and recompute as
  on one rank (mean over the loss tokens of the whole global batch, not of each micro-batch);
* parameter groups: one LR per trained module, no weight decay on norms and biases, nothing for frozen parts;
* checkpoints: keep the last N; a crash in the middle of a save (before the rename, or before the
  marker) leaves the previous checkpoint loadable; an async save publishes the same checkpoint.
"""

import pytest
import torch

from tests.multirank import run_ranks

TINY_ALL = ("parallel.first_pipeline_stage_language_layers=null", "parallel.pipeline_parallel=1", "seq_len=128", "global_batch_size=4", "num_workers=0", "eval.every=null", "train_tokens=4096",
            'blend=[{"kind": "caption", "weight": 1}, {"kind": "interleaved", "weight": 1}]')
LAYOUTS = {
    "DP=2": (),
    "PP=2": ("parallel.pipeline_parallel=2", "parallel.first_pipeline_stage_language_layers=1"),
    "TP=2 SP recompute": ("parallel.tensor_parallel=2", "parallel.sequence_parallel=true", "recompute.enabled=true"),
}


def _run(data_root, root, stage, overrides):
    from megatron_vl.config.overrides import apply_overrides
    from megatron_vl.config.recipe import load_recipe
    from megatron_vl.runtime.platform import detect_platform
    from megatron_vl.tokenizer import load_tokenizer
    from megatron_vl.training.run_config import RunPaths, resolve_run

    recipe = apply_overrides(load_recipe(stage, "tiny"), list(overrides))
    paths = RunPaths(data_root=str(data_root), checkpoint_root=str(root), log_root=str(root / "logs"),
                     tokenizer=str(data_root / "tokenizer"))
    tokenizer = load_tokenizer(paths.tokenizer)
    return resolve_run(recipe, paths, tokenizer, detect_platform()), tokenizer


def _trainer(data_root, root, stage="stage3_multimodal", overrides=TINY_ALL, full=None):
    from megatron_vl.models.sharding import load_full_state_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.training.build import build_trainer

    run, tokenizer = _run(data_root, root, stage, overrides)
    pgs = initialize_model_parallel(run.recipe.parallel)
    set_seed(run.recipe.seed, pgs)
    trainer, checkpointer = build_trainer(run, tokenizer, pgs)
    if full is not None:
        load_full_state_dict(trainer.trainable.model, full)
        trainer.trainable.optimizer.reload_model_params()
    return trainer, checkpointer


def _loss_grads_and_steps(trainer) -> dict:
    """Loss and full gradients of the first global batch, then the losses of two optimizer steps."""
    from megatron_vl.models.sharding import gather_full_state_dict

    batches = iter(trainer.loader)
    loss_sum, tokens = trainer.global_loss(trainer.forward_backward(batches))
    _gather_reduced_grads(trainer.trainable.chunks[0])
    grads = gather_full_state_dict(trainer.trainable.model, lambda param: param.main_grad.clone())
    losses = [trainer.train_step(batches).loss for _ in range(2)]
    return {"loss": loss_sum / tokens, "tokens": tokens, "grads": grads, "losses": losses}


def _gather_reduced_grads(ddp) -> None:
    """The distributed optimizer's reduce-scatter leaves each DP rank the summed gradients of its own shard of
    each bucket only (the rest holds its local gradients): all-gather the shards into every rank's buffer."""
    for buffer in ddp.buffers:
        group = buffer.data_parallel_group
        for bucket in buffer.buckets:
            shards = list(bucket.grad_data.chunk(group.size()))
            torch.distributed.all_gather(shards, shards[group.rank()].clone(), group=group)


def _single_rank(data_root, root) -> dict:
    from megatron_vl.data.train_loader import TrainLoader
    from megatron_vl.models.sharding import gather_full_state_dict

    trainer, _ = _trainer(data_root, root / "reference")
    full = {name: tensor.clone() for name, tensor in gather_full_state_dict(trainer.trainable.model).items()}
    per_micro_batch = []
    for batch in TrainLoader(trainer.loader.config, tokenizer_fingerprint=_fingerprint(data_root)):
        per_micro_batch.append(batch.num_loss_tokens)
        if len(per_micro_batch) == trainer.micro_batches_per_step:
            break
    result = _loss_grads_and_steps(trainer)
    result.update(full=full, loss_tokens_per_micro_batch=per_micro_batch)
    result["groups"] = _param_groups(data_root, root / "groups")
    result["checkpoints"] = _checkpoint_cases(data_root, root / "checkpoints", full)
    return result


def _fingerprint(data_root):
    from megatron_vl.tokenizer import load_tokenizer

    return load_tokenizer(data_root / "tokenizer").fingerprint


def _layouts(data_root, root, full) -> dict:
    results = {}
    for name, overrides in LAYOUTS.items():
        trainer, _ = _trainer(data_root, root / name.replace(" ", "_"), overrides=(*TINY_ALL, *overrides), full=full)
        results[name] = _loss_grads_and_steps(trainer)
    return results


def _param_groups(data_root, root) -> list[dict]:
    """Stage 2 (ViT 3e-4 + projector 1e-3, LLM frozen): every optimizer group and its parameters' names (the
    distributed optimizer's groups hold shards of the model's parameters: its map says whose)."""
    trainer, _ = _trainer(data_root, root, stage="stage2_vit")
    names = {param: name for name, param in trainer.trainable.model.named_parameters()}
    (optimizer,) = trainer.trainable.optimizer.chained_optimizers
    groups = [{"max_lr": group["max_lr"], "wd_mult": group["wd_mult"], "params": []} for group in optimizer.param_groups]
    for param, (group_index, _) in optimizer.model_param_group_index_map.items():
        groups[group_index]["params"].append((names[param], param.dim()))
    ddp = trainer.trainable.chunks[0]
    buffered = {names[param] for buffer in ddp.buffers for param in buffer.params}
    return {"groups": groups, "buffered": sorted(buffered), "all": sorted(names.values())}


def _checkpoint_cases(data_root, root, full) -> dict:
    from unittest import mock

    from megatron_vl.training import checkpoint_files
    from megatron_vl.training import checkpointing

    cases = {}
    overrides = (*TINY_ALL, "checkpoint.keep_last=2")
    trainer, checkpointer = _trainer(data_root, root, overrides=overrides, full=full)
    batches = iter(trainer.loader)
    saved = {}
    for _ in range(3):
        trainer.train_step(batches)
        checkpointer.save(trainer)
        saved[trainer.state.iteration] = _parameters(trainer)
    cases["kept"] = checkpoint_files.complete_iterations(root / "stage3_multimodal")
    trainer.train_step(batches)
    with mock.patch.object(checkpointing, "publish_directory", side_effect=OSError("killed before the rename")):
        with pytest.raises(OSError):
            checkpointer.save(trainer)
    stage_dir = root / "stage3_multimodal"
    cases["after_crash_before_rename"] = (sorted(p.name for p in stage_dir.iterdir()), checkpoint_files.read_latest_iteration(stage_dir))

    resumed, checkpointer = _trainer(data_root, root, overrides=overrides, full=None)
    cases["partial_removed"] = not checkpoint_files.partial_dir(stage_dir, 4).exists()
    assert checkpointer.resume(resumed)
    cases["resumed_iteration"] = resumed.state.iteration
    cases["resumed_parameters_equal"] = all(torch.equal(a, b) for a, b in zip(_parameters(resumed), saved[3]))
    batches = iter(resumed.loader)
    resumed.train_step(batches)
    with mock.patch.object(checkpointing.checkpoint_files, "write_latest_iteration", side_effect=OSError("killed before the marker")):
        with pytest.raises(OSError):
            checkpointer.save(resumed)
    cases["after_crash_before_marker"] = (checkpoint_files.complete_iterations(stage_dir), checkpoint_files.read_latest_iteration(stage_dir))
    again, checkpointer = _trainer(data_root, root, overrides=overrides, full=None)
    checkpointer.resume(again)
    cases["resumed_after_marker_crash"] = again.state.iteration
    again.train_step(iter(again.loader))
    checkpointer.save(again)
    cases["saved_over_stale"] = (checkpoint_files.complete_iterations(stage_dir), checkpoint_files.read_latest_iteration(stage_dir))

    async_trainer, async_checkpointer = _trainer(
        data_root, root / "async", overrides=(*TINY_ALL, "checkpoint.async_save=true"), full=full
    )
    async_trainer.train_step(iter(async_trainer.loader))
    async_checkpointer.save(async_trainer)
    async_checkpointer.close()
    async_dir = root / "async" / "stage3_multimodal"
    cases["async"] = (checkpoint_files.read_latest_iteration(async_dir), checkpoint_files.complete_iterations(async_dir))
    reloaded, reload_checkpointer = _trainer(data_root, root / "async", overrides=TINY_ALL, full=None)
    reload_checkpointer.resume(reloaded)
    cases["async_parameters_equal"] = all(
        torch.equal(a, b) for a, b in zip(_parameters(reloaded), _parameters(async_trainer))
    )
    return cases


def _parameters(trainer) -> list[torch.Tensor]:
    return [param.detach().clone() for param in trainer.trainable.model.parameters()]


@pytest.fixture(scope="module")
def single(data_root, tmp_path_factory):
    return run_ranks(_single_rank, 1, data_root, tmp_path_factory.mktemp("single"))[0]


@pytest.fixture(scope="module")
def two_ranks(data_root, single, tmp_path_factory):
    return run_ranks(_layouts, 2, data_root, tmp_path_factory.mktemp("layouts"), single["full"])


def test_micro_batches_have_different_loss_token_counts(single):
    counts = single["loss_tokens_per_micro_batch"]
    assert len(set(counts)) > 1, counts
    assert sum(counts) == single["tokens"]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_global_batch_loss_and_gradients_match_one_rank(single, two_ranks, layout):
    results = [rank[layout] for rank in two_ranks]
    loss = results[0]["loss"]
    assert all(result["loss"] == pytest.approx(loss, rel=1e-12) for result in results), "ranks disagree"
    assert loss == pytest.approx(single["loss"], rel=1e-5)
    assert results[0]["tokens"] == single["tokens"]
    grads = {}
    for result in results:
        grads.update(result["grads"])
    assert grads.keys() == single["grads"].keys()
    for name, reference in single["grads"].items():
        torch.testing.assert_close(grads[name], reference, atol=1e-6, rtol=1e-4, msg=lambda message: f"{name} at {layout}: {message}")
    assert results[0]["losses"] == pytest.approx(single["losses"], rel=1e-4)


def test_param_groups_per_module_without_decay_on_norms_and_biases(single):
    groups = single["groups"]
    lrs = {"vision_model.": 3e-4, "vision_projection.": 1e-3}
    assert len(groups["groups"]) == 4
    for group in groups["groups"]:
        for name, dim in group["params"]:
            assert group["max_lr"] == next(lr for prefix, lr in lrs.items() if name.startswith(prefix)), name
            no_decay = dim == 1 or name.endswith(".bias")
            assert group["wd_mult"] == (0.0 if no_decay else 1.0), (name, group["wd_mult"])
    in_groups = {name for group in groups["groups"] for name, _ in group["params"]}
    trained = {name for name in groups["all"] if not name.startswith("language_model.")}
    assert in_groups == trained == set(groups["buffered"])


def test_keep_last_n_checkpoints(single):
    assert single["checkpoints"]["kept"] == [2, 3]


def test_crash_during_save_leaves_the_previous_checkpoint_loadable(single):
    cases = single["checkpoints"]
    entries, latest = cases["after_crash_before_rename"]
    assert "iter_0000004.partial" in entries and latest == 3
    assert cases["partial_removed"]
    assert cases["resumed_iteration"] == 3 and cases["resumed_parameters_equal"]
    assert cases["after_crash_before_marker"] == ([2, 3, 4], 3)
    assert cases["resumed_after_marker_crash"] == 3
    assert cases["saved_over_stale"] == ([3, 4], 4)


def test_async_save_publishes_a_loadable_checkpoint(single):
    cases = single["checkpoints"]
    assert cases["async"] == (1, [1])
    assert cases["async_parameters_equal"]
