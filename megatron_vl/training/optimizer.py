"""megatron-core's AdamW with one learning rate per module (ViT / projector / LLM), no weight decay on
norms and biases, and the stage's warmup + cosine (or constant) schedule."""

from __future__ import annotations

import torch
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer, get_standard_config_overrides
from megatron.core.optimizer.optimizer_config import ParamKey
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_vl.config.training import LRSchedule, OptimizerSettings, TrainedModules
from megatron_vl.training import distributed_optimizer_loading

MODULE_PREFIXES = {"vision": "vision_model.", "projector": "vision_projection.", "language": "language_model."}
"""Parameter-name prefix of each module inside ``VLModel`` (wrappers add ``module.`` in front)."""


def module_overrides(trains: TrainedModules, schedule: LRSchedule) -> dict[ParamKey, dict]:
    """megatron param-group overrides: each trained module's peak and floor LR.

    Modules with the same LR share a group. ``lr_mult`` (LR over the stage's peak LR) names the group:
    megatron matches a checkpoint's param groups to the optimizer's by (``wd_mult``, ``lr_mult``, ...) only,
    so groups that differ in ``max_lr`` alone would be mixed up on resume. The scheduler ignores it.
    """
    peak = peak_lr(trains)
    overrides = {}
    for module, prefix in MODULE_PREFIXES.items():
        lr = trains.lr(module)
        if lr is not None:
            key = ParamKey(name=(f"{prefix}*", f"*.{prefix}*"))
            overrides[key] = {"max_lr": lr, "min_lr": lr * schedule.min_lr_ratio, "lr_mult": lr / peak}
    return overrides


def peak_lr(trains: TrainedModules) -> float:
    return max(trains.lr(module) for module in MODULE_PREFIXES if trains.lr(module) is not None)


def build_optimizer(
    chunks: list[torch.nn.Module],
    *,
    trains: TrainedModules,
    settings: OptimizerSettings,
    schedule: LRSchedule,
    bf16: bool,
    pg_collection: ProcessGroupCollection,
):
    """The optimizer over the trainable parameters of ``chunks`` (DDP-wrapped): one group per
    (module LR, decays or not). Frozen parameters (``requires_grad=False``) get no state."""
    if settings.distributed:
        distributed_optimizer_loading.enable()
    peak = peak_lr(trains)
    config = OptimizerConfig(
        optimizer="adam",
        lr=peak,
        min_lr=peak * schedule.min_lr_ratio,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        adam_eps=settings.adam_eps,
        clip_grad=settings.clip_grad,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_distributed_optimizer=settings.distributed,
    )
    # megatron's standard rule: no weight decay on 1-D parameters (norm weights) and on biases.
    overrides = {**get_standard_config_overrides(config), **module_overrides(trains, schedule)}
    return get_megatron_optimizer(
        config, chunks, config_overrides=overrides, use_gloo_process_groups=False, pg_collection=pg_collection
    )


def build_scheduler(optimizer, *, schedule: LRSchedule, weight_decay: float, train_iterations: int) -> OptimizerParamScheduler:
    """Linear warmup from 0, then cosine decay to each group's ``min_lr`` at ``train_iterations`` (or constant).

    The scheduler counts optimizer steps. On resume its step count comes from the checkpoint and the
    other settings from the recipe.
    """
    peak = max(group["max_lr"] for group in optimizer.param_groups)
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=peak,
        min_lr=peak * schedule.min_lr_ratio,
        lr_warmup_steps=schedule.warmup_iterations(train_iterations),
        lr_decay_steps=train_iterations,
        lr_decay_style=schedule.style,
        start_wd=weight_decay,
        end_wd=weight_decay,
        wd_incr_steps=train_iterations,
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=False,
        override_opt_param_scheduler=True,
    )


def learning_rates(optimizer, trains: TrainedModules) -> dict[str, float]:
    """The current LR of each trained module (every rank has every group, possibly empty)."""
    rates = {}
    for module in MODULE_PREFIXES:
        if trains.lr(module) is not None:
            rates[module] = next(g["lr"] for g in optimizer.param_groups if g["max_lr"] == trains.lr(module))
    return rates
