"""How a stage trains: which modules at which learning rate, the optimizer, the LR schedule, recompute,
checkpointing, logging and evaluation. A stage recipe (``megatron_vl.config.recipe``) composes these."""

from __future__ import annotations

import dataclasses

from megatron_vl.config.validation import fraction, non_negative_number, one_of, positive_int, positive_number

MODULES = ("vision", "projector", "language")
PRECISIONS = ("auto", "bf16", "fp32")
OPTIMIZER_CHECKPOINT_FORMATS = ("fully_reshardable", "dp_reshardable")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainedModules:
    """Peak learning rate of each part of the model; ``None`` freezes the part (no gradients, no optimizer state)."""

    vision_lr: float | None
    """The ViT (``vision_model``)."""
    projector_lr: float | None
    """The patch merger (``vision_projection``)."""
    language_lr: float | None
    """The LLM (``language_model``: embeddings, decoder, output layer)."""

    def __post_init__(self) -> None:
        for module in MODULES:
            lr = self.lr(module)
            if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1):
                raise ValueError(
                    f"TrainedModules.{module}_lr must be a learning rate in (0, 1), or None to freeze the {module} "
                    f"part; got {lr!r}"
                )
        if all(self.lr(module) is None for module in MODULES):
            raise ValueError("TrainedModules freezes every part: give at least one of vision_lr, projector_lr, language_lr")

    def lr(self, module: str) -> float | None:
        return getattr(self, f"{module}_lr")

    @property
    def frozen(self) -> dict[str, bool]:
        """``{"vision": ..., "projector": ..., "language": ...}`` as ``VLModel.freeze`` takes it."""
        return {module: self.lr(module) is None for module in MODULES}


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerSettings:
    """AdamW (megatron-core's optimizer), its weight decay and gradient clipping."""

    weight_decay: float = 0.1
    """Decoupled weight decay of weight matrices; norms and biases get none."""
    adam_beta1: float = 0.9
    """First-moment decay."""
    adam_beta2: float = 0.95
    """Second-moment decay."""
    adam_eps: float = 1e-8
    """Added to the denominator of the update."""
    clip_grad: float = 1.0
    """Clip the global gradient L2 norm to this value (0 disables clipping)."""
    distributed: bool = True
    """Shard the optimizer state over data-parallel ranks (megatron's distributed optimizer)."""
    checkpoint_format: str = "fully_reshardable"
    """How the distributed optimizer's state is saved: ``fully_reshardable`` (resumes at any TP / PP / DP;
    gathered over DP when saving) or ``dp_reshardable`` (faster; resumes only at the same TP and PP)."""

    def __post_init__(self) -> None:
        non_negative_number("OptimizerSettings", "weight_decay", self.weight_decay)
        non_negative_number("OptimizerSettings", "clip_grad", self.clip_grad)
        fraction("OptimizerSettings", "adam_beta1", self.adam_beta1, upper_open=True)
        fraction("OptimizerSettings", "adam_beta2", self.adam_beta2, upper_open=True)
        positive_number("OptimizerSettings", "adam_eps", self.adam_eps)
        one_of("OptimizerSettings", "checkpoint_format", self.checkpoint_format, OPTIMIZER_CHECKPOINT_FORMATS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LRSchedule:
    """Linear warmup from 0 to each module's peak LR, then cosine decay or constant."""

    style: str = "cosine"
    """``cosine`` (decays to ``min_lr_ratio`` x peak at the last iteration) or ``constant``."""
    warmup_fraction: float = 0.01
    """Share of the stage's iterations spent warming up."""
    min_lr_ratio: float = 0.1
    """The cosine floor, as a fraction of each module's peak LR."""

    def __post_init__(self) -> None:
        one_of("LRSchedule", "style", self.style, ("cosine", "constant"))
        fraction("LRSchedule", "warmup_fraction", self.warmup_fraction, upper_open=True)
        fraction("LRSchedule", "min_lr_ratio", self.min_lr_ratio)

    def warmup_iterations(self, train_iterations: int) -> int:
        return min(int(self.warmup_fraction * train_iterations), train_iterations - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecomputeSettings:
    """Activation recompute (megatron's full recompute) in both the ViT and the LLM."""

    enabled: bool = False
    """Recompute transformer layers in the backward pass instead of keeping their activations."""
    method: str = "uniform"
    """megatron's ``recompute_method``: ``uniform`` (checkpoint every ``num_layers`` layers as one chunk) or
    ``block`` (checkpoint the first ``num_layers`` layers of each pipeline stage, keep the rest)."""
    num_layers: int = 1
    """megatron's ``recompute_num_layers``."""

    def __post_init__(self) -> None:
        one_of("RecomputeSettings", "method", self.method, ("uniform", "block"))
        positive_int("RecomputeSettings", "num_layers", self.num_layers)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointSettings:
    """When and how checkpoints are written (always also at the end of the stage and on SIGTERM / SIGUSR1)."""

    save_every: int = 1000
    """Save every this many iterations."""
    keep_last: int | None = 3
    """Keep this many newest complete checkpoints of the stage, deleting older ones; None keeps all."""
    async_save: bool = False
    """Write checkpoints in the background (megatron's async dist-checkpointing) while training goes on."""
    save_initial: bool = False
    """A new stage saves iteration 0 (its starting weights, optimizer and loader state) before its first step,
    to audit what the stage changed or restart it exactly; never deleted by ``keep_last``."""

    def __post_init__(self) -> None:
        positive_int("CheckpointSettings", "save_every", self.save_every)
        positive_int("CheckpointSettings", "keep_last", self.keep_last, optional=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    """What the console and TensorBoard show (the JSONL metrics file gets every iteration)."""

    log_every: int = 10
    """Print a line and write TensorBoard scalars every this many iterations."""
    peak_flops: float | None = None
    """Peak FLOP/s of one accelerator, the MFU denominator; None: the platform's dense bf16 peak where the GPU is one
    we know (H100 / H200 989e12, A100 312e12, ...), else no MFU is reported (e.g. on CPU)."""
    profile_steps: tuple[int, int] | None = None
    """Record steps (first, last) with ``torch.profiler`` into ``LOG_DIR/profile_rank<R>.json``; None: off."""

    def __post_init__(self) -> None:
        positive_int("LoggingSettings", "log_every", self.log_every)
        if self.profile_steps is not None:
            steps = tuple(self.profile_steps)
            if len(steps) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps) or steps[0] > steps[1]:
                raise ValueError(
                    f"LoggingSettings.profile_steps={self.profile_steps!r} must be two step numbers (first, last) with "
                    "1 <= first <= last, e.g. [20, 22]"
                )
            object.__setattr__(self, "profile_steps", steps)
        if self.peak_flops is not None:
            positive_number("LoggingSettings", "peak_flops", self.peak_flops)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """Loss on a held-out packed dataset (``eval`` under the data root, see ``recipe.packed_dataset_dir``)."""

    every: int | None = 1000
    """Evaluate every this many iterations and at the end of the stage; None: never."""
    samples: int | None = None
    """Sequences of the held-out set to evaluate on; None: all of them."""

    def __post_init__(self) -> None:
        positive_int("EvalSettings", "every", self.every, optional=True)
        positive_int("EvalSettings", "samples", self.samples, optional=True)
