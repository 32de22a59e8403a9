"""Assemble a stage's run on the initialised process groups: the parallelized model, the loaders, the
model step, the hooks (metrics, eval, profiling, signals, checkpoints, benchmark scores; their priorities order
them) and the trainer."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_vl.data.eval_loader import EvalLoader
from megatron_vl.data.train_loader import TrainLoader
from megatron_vl.tokenizer import Tokenizer
from megatron_vl.training.benchmark_scores import (
    BENCHMARK_RESULTS_DIR,
    BenchmarkScores,
    check_benchmark_files,
    scoring_group,
)
from megatron_vl.training.checkpointing import Checkpointer, CheckpointHook
from megatron_vl.training.evaluation import EvalHook
from megatron_vl.training.fault_injection import FaultInjection, FaultInjectionHook
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
    platform = run.platform
    benchmark_group = None
    if recipe.benchmarks.every:
        benchmark_group = scoring_group()
        check_benchmark_files(recipe.benchmarks, run.benchmark_files, benchmark_group)
    device = torch.device("cuda", torch.cuda.current_device()) if platform.on_gpu else torch.device("cpu")
    trainable = parallelize(run, pg_collection)
    dp_rank, dp_size = pg_collection.dp.rank(), pg_collection.dp.size()
    tokens_per_second = run.model.vision.tokens_per_second
    # The CP ranks of a replica share its data-parallel rank, so they read the same micro-batches.
    alignment = recipe.parallel.document_alignment
    loader = TrainLoader(run.data, tokenizer_fingerprint=tokenizer.fingerprint, data_parallel_rank=dp_rank,
                         data_parallel_size=dp_size, data_parallel_group=pg_collection.dp,
                         tokens_per_second=tokens_per_second, document_alignment=alignment)
    model_step = VLModelStep(run.model, recipe.trains.frozen, device, cp_group=pg_collection.cp)
    peak_flops = recipe.logging.peak_flops or platform.peak_flops
    checkpointer = Checkpointer(run, tokenizer, pg_collection, recipe.checkpoint)
    hooks = [
        MetricsLog(run.log_dir, log_every=recipe.logging.log_every, peak_flops=peak_flops,
                   world_size=dist.get_world_size(), writer=dist.get_rank() == 0),
        StopOnSignal(),
        CheckpointHook(checkpointer, recipe.checkpoint.save_every),
    ]
    if recipe.eval.every:
        eval_loader = EvalLoader(run.data, tokenizer_fingerprint=tokenizer.fingerprint, data_parallel_rank=dp_rank,
                                 data_parallel_size=dp_size, tokens_per_second=tokens_per_second,
                                 document_alignment=alignment)
        hooks.append(EvalHook(eval_loader, recipe.eval.every))
    if recipe.benchmarks.every:
        hooks.append(BenchmarkScores(checkpointer, recipe.benchmarks, run.benchmark_files, group=benchmark_group,
                                     results_dir=os.path.join(run.log_dir, BENCHMARK_RESULTS_DIR),
                                     on_gpu=platform.on_gpu, bf16=run.bf16))
    fault = FaultInjection.from_environment()
    if fault is not None:
        hooks.append(FaultInjectionHook(fault))
    if recipe.logging.profile_steps is not None:
        first, last = recipe.logging.profile_steps
        hooks.append(ProfileHook(first, last, run.log_dir, dist.get_rank(), on_gpu=platform.on_gpu))
    trainer = Trainer(
        trainable=trainable, model_step=model_step, loader=loader,
        micro_batches_per_step=loader.micro_batches_per_step, micro_batch_tokens=recipe.micro_batch_size * recipe.seq_len,
        tokens_per_step=recipe.tokens_per_iteration, train_iterations=run.train_iterations, pg_collection=pg_collection,
        device=device, hooks=hooks,
    )
    return trainer, checkpointer
