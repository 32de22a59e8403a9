"""How a stage trains: which modules at which learning rate, the optimizer, the LR schedule, recompute,
checkpointing, logging, evaluation and benchmark scores. A stage recipe (``megatron_vl.config.recipe``) composes
these."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchmarkSettings:
    """Benchmark scores during training: rank 0 exports the checkpoint just saved to a temporary Hugging Face folder
    and scores it with ``checkpoints_tools.evaluate`` (greedy generation on its own device, the run's precision);
    the scores go to ``metrics.jsonl`` and TensorBoard next to the loss. Every rank waits meanwhile, so keep the
    files small (or set ``limit``)."""

    every: int | None = None
    """Score every this many iterations (a multiple of ``checkpoint.save_every``) and at the end of the stage;
    None: never."""
    files: tuple[str, ...] = ()
    """Benchmark files as ``checkpoints_tools.evaluate`` reads them (VLMEvalKit ``.tsv``, grounding or caption
    ``.jsonl``): absolute paths, or paths relative to the data root. Their names (without suffix) name the scores,
    so they must differ."""
    metrics: tuple[str | None, ...] = ()
    """The metric of each file, in order (None: inferred from the file); empty: every metric inferred."""
    limit: int | None = None
    """Score only the first this many rows of each file; None: all rows."""
    batch_size: int = 8
    """Rows generated together."""
    max_new_tokens: int | None = None
    """Tokens per answer; None: ``evaluate``'s default for the metric (32 multiple choice, 128 grounding, else 64)."""
    chat: bool = True
    """Ask through the chat template; False: each row's images then its prompt, as a pre-training document reads
    (``evaluate --no-chat``: a model that has seen no chat turns, such as the demo's)."""
    caption_prompt: str | None = None
    """Prompt of caption rows; None: ``evaluate``'s default (empty: the model continues after the image, no chat)."""
    grounding_prompt: str | None = None
    """Prompt of grounding rows with ``{query}``; None: ``evaluate``'s default."""

    def __post_init__(self) -> None:
        positive_int("BenchmarkSettings", "every", self.every, optional=True)
        positive_int("BenchmarkSettings", "limit", self.limit, optional=True)
        positive_int("BenchmarkSettings", "batch_size", self.batch_size)
        positive_int("BenchmarkSettings", "max_new_tokens", self.max_new_tokens, optional=True)
        files, metrics = tuple(self.files), tuple(self.metrics)
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "metrics", metrics)
        if any(not isinstance(path, str) or not path for path in files):
            raise ValueError(f"BenchmarkSettings.files={list(files)!r} must be file paths (strings)")
        if self.every is not None and not files:
            raise ValueError(
                f"BenchmarkSettings.every={self.every} scores no files: name them first, e.g. --set "
                "'benchmarks.files=[\"benchmarks/captions.jsonl\"]' before --set benchmarks.every=N"
            )
        names = [Path(path).stem for path in files]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"BenchmarkSettings.files: several files are named {repeated}; the name (without suffix) names the "
                "scores, so rename or copy one of them"
            )
        if metrics and len(metrics) != len(files):
            raise ValueError(
                f"BenchmarkSettings.metrics has {len(metrics)} entries for {len(files)} files; give one per file "
                "(null: inferred), or none to infer them all"
            )
        if any(metric is not None and (not isinstance(metric, str) or not metric) for metric in metrics):
            raise ValueError(f"BenchmarkSettings.metrics={list(metrics)!r} must be metric names or null")

    @property
    def names(self) -> list[str]:
        """What each file's scores are called: its file name without the suffix."""
        return [Path(path).stem for path in self.files]
