"""Turn a run config into this rank's trainable model, in one visible order:

1. build this rank's pipeline stage of ``VLModel`` (TP / SP come from its layer specs);
2. freeze the modules the stage does not train (before DDP, so they get no gradient buffer);
3. switch on activation recompute in the ViT's and the LLM's transformer blocks;
4. wrap for bf16 (megatron's ``Float16Module``: fp32 inputs in, fp32 loss out) when training in bf16;
5. wrap in megatron's DDP (gradient buffers, DP reduction, per-token loss scaling by ``finalize_model_grads``);
6. build the optimizer (per-module LR groups, distributed optimizer) and the LR scheduler.
"""

from __future__ import annotations

import dataclasses

from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.module import Float16Module
from megatron.core.transformer.transformer_block import TransformerBlock

from megatron_vl.config.training import RecomputeSettings, TrainedModules
from megatron_vl.models import VLModel
from megatron_vl.training.optimizer import build_optimizer, build_scheduler, learning_rates
from megatron_vl.training.run_config import RunConfig


@dataclasses.dataclass
class TrainableModel:
    """This rank's model stage, as the schedule, the optimizer and the checkpoints need it."""

    model: VLModel
    """The unwrapped stage: its ``sharded_state_dict()`` keys are the checkpoint's model keys."""
    chunks: list[DistributedDataParallel]
    """The DDP-wrapped stage, as megatron's schedules and ``finalize_model_grads`` take it."""
    optimizer: object
    """megatron's optimizer (``DistributedOptimizer`` or ``FP32Optimizer`` / ``Float16OptimizerWithFloat16Params``)."""
    scheduler: OptimizerParamScheduler
    """Per-module warmup and decay."""
    trains: TrainedModules
    """The trained modules and their peak LRs."""

    def learning_rates(self) -> dict[str, float]:
        """The current LR of each trained module."""
        return learning_rates(self.optimizer, self.trains)


def apply_recompute(model: VLModel, settings: RecomputeSettings) -> None:
    """megatron's full activation recompute in every transformer block of the stage (ViT and LLM).

    ``TransformerBlock`` reads these fields at run time, so setting them on the built blocks' configs is
    the same as building with them.
    """
    if not settings.enabled:
        return
    for block in model.modules():
        if isinstance(block, TransformerBlock):
            block.config.recompute_granularity = "full"
            block.config.recompute_method = settings.method
            block.config.recompute_num_layers = settings.num_layers


def parallelize(run: RunConfig, pg_collection: ProcessGroupCollection) -> TrainableModel:
    recipe = run.recipe
    pp = pg_collection.pp
    model = VLModel(
        run.model,
        parallel=recipe.parallel,
        pg_collection=pg_collection,
        platform=run.platform,
        pre_process=pp.rank() == 0,
        post_process=pp.rank() == pp.size() - 1,
    )
    model.freeze(**recipe.trains.frozen)
    apply_recompute(model, recipe.recompute)

    config = model.config
    # The loss function returns (sum over loss tokens, token count); finalize_model_grads divides the
    # gradients by the token count of the whole global batch (all micro-batches, all DP ranks).
    config.calculate_per_token_loss = True
    module = Float16Module(config, model) if run.bf16 else model
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=run.platform.on_gpu,
        use_distributed_optimizer=recipe.optimizer.distributed,
        check_for_nan_in_grad=True,
    )
    ddp = DistributedDataParallel(config, ddp_config, module, pg_collection=pg_collection)
    chunks = [ddp]

    optimizer = build_optimizer(
        chunks,
        trains=recipe.trains,
        settings=recipe.optimizer,
        schedule=recipe.schedule,
        bf16=run.bf16,
        pg_collection=pg_collection,
    )
    scheduler = build_scheduler(
        optimizer,
        schedule=recipe.schedule,
        weight_decay=recipe.optimizer.weight_decay,
        train_iterations=run.train_iterations,
    )
    config.grad_scale_func = optimizer.scale_loss
    config.finalize_model_grads_func = finalize_model_grads
    if ddp_config.overlap_grad_reduce:
        config.no_sync_func = ddp.no_sync
        config.grad_sync_func = ddp.start_grad_sync
    return TrainableModel(model=model, chunks=chunks, optimizer=optimizer, scheduler=scheduler, trains=recipe.trains)
