"""Assemble a stage's run on the initialised process groups: the parallelized model, the loaders, the
model step, the hooks (metrics, eval, profiling, signals, checkpoints, in this order) and the trainer."""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_vl.data.eval_loader import EvalLoader
from megatron_vl.data.train_loader import TrainLoader
from megatron_vl.tokenizer import Tokenizer
from megatron_vl.training.checkpointing import Checkpointer, CheckpointHook
from megatron_vl.training.evaluation import EvalHook
from megatron_vl.training.metrics_log import MetricsLog
from megatron_vl.training.model_step import VLModelStep
from megatron_vl.training.parallelize import parallelize
from megatron_vl.training.profiling import ProfileHook
from megatron_vl.training.run_config import RunConfig
from megatron_vl.training.signals import StopOnSignal
from megatron_vl.training.trainer import Trainer


def build_trainer(run: RunConfig, tokenizer: Tokenizer, pg_collection: ProcessGroupCollection) -> tuple[Trainer, Checkpointer]:
    """The trainer of ``run`` at iteration 0 with freshly initialised weights, and its checkpointer
    (``checkpointer.resume`` / ``load_weights`` then set where it starts)."""
    recipe = run.recipe
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    trainable = parallelize(run, pg_collection)
    dp_rank, dp_size = pg_collection.dp.rank(), pg_collection.dp.size()
    loader = TrainLoader(run.data, tokenizer_fingerprint=tokenizer.fingerprint, data_parallel_rank=dp_rank,
                         data_parallel_size=dp_size, data_parallel_group=pg_collection.dp)
    model_step = VLModelStep(run.model, recipe.trains.frozen, device)
    metrics = MetricsLog(run.log_dir, log_every=recipe.logging.log_every, peak_flops=recipe.logging.peak_flops,
                         world_size=dist.get_world_size(), writer=dist.get_rank() == 0)
    checkpointer = Checkpointer(run, tokenizer, pg_collection, recipe.checkpoint)
    hooks = [metrics]
    if recipe.eval.every:
        eval_loader = EvalLoader(run.data, tokenizer_fingerprint=tokenizer.fingerprint, data_parallel_rank=dp_rank,
                                 data_parallel_size=dp_size)
        hooks.append(EvalHook(eval_loader, recipe.eval.every, metrics))
    if recipe.logging.profile_steps is not None:
        first, last = recipe.logging.profile_steps
        hooks.append(ProfileHook(first, last, run.log_dir, dist.get_rank()))
    hooks += [StopOnSignal(), CheckpointHook(checkpointer, recipe.checkpoint.save_every)]
    trainer = Trainer(
        trainable=trainable, forward_step=model_step, step_stats=model_step.stats, loader=loader,
        micro_batches_per_step=loader.micro_batches_per_step, micro_batch_tokens=recipe.micro_batch_size * recipe.seq_len,
        tokens_per_step=recipe.tokens_per_iteration, train_iterations=run.train_iterations, pg_collection=pg_collection,
        device=device, hooks=hooks,
    )
    return trainer, checkpointer
