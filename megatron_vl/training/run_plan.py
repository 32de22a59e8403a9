"""What a run costs per step and per GPU before it starts: micro-batches, pipeline bubble, memory estimate.

``plan_run(run, world_size)`` is arithmetic on the run config (``train --dry-run`` prints it as ``plan``):

- micro-batches per DP rank per step ``m = global_batch / (DP x micro_batch)``; the 1F1B schedule idles
  ``(PP - 1) / (m + PP - 1)`` of each step (the pipeline bubble).
- parameters per GPU of each pipeline stage (``parameter_count``); bytes per parameter as in megatron's
  distributed optimizer table: bf16 params 2, fp32 gradients 4 (``grad_reduce_in_fp32``), fp32 main params
  and two Adam moments 12 divided over DP (fp32 runs: 4, 4 and 8 / DP) when the recipe asks for megatron's
  distributed optimizer (GPU runs with fused Adam; CPU runs fall back to the replicated one, which this
  does not model). Frozen modules hold their params only.
- activations per micro-batch, bf16, flash-style attention (no seq² term). A layer of ``s`` tokens keeps
  ``4 s h`` elements (norm and linear inputs; divided by TP with sequence parallelism, else whole on every
  TP rank) plus ``s (qkv + h + 3 ffn) / TP`` (q, k, v, attention output, SwiGLU's gate / up and its output).
  Full recompute keeps each recomputed chunk's input and, during backward, one chunk's activations. The
  first stage holds ``min(PP, m)`` micro-batches in flight (stage ``i``: ``min(PP - i, m)``), plus the ViT
  (when it trains) and the projector (when gradients pass through it) at the worst case of every LLM token
  being an image token (``merge²`` patches each); the last stage holds the fp32 softmax of the
  cross-entropy (4 bytes per logit, vocabulary split over TP).

- context parallelism over CP ranks: each rank holds ``1 / CP`` of every micro-batch's LLM tokens (its
  activations and logits shrink by CP, the in-flight count does not) and encodes ``1 / CP`` of its patches (the
  images are shared by FLOPs; the estimate assumes the share evens out); the distributed optimizer shards over
  DP x CP.
- the step time: model FLOPs of a global batch (every row one document of ``seq_len`` tokens, the LLM only:
  the ViT's share depends on the data) plus the forward the recompute runs again (every layer under
  ``uniform``, the first ``num_layers`` of each stage under ``block``), over the world's GPUs,
  at ``ASSUMED_MFU`` of the GPU's dense bf16 peak, stretched by the pipeline bubble: for comparing layouts,
  not a promise (communication that does not overlap lowers the real MFU, more with larger TP and CP).

Not counted: transient buffers (logit gradients, communication buckets, the CUDA context, allocator
fragmentation); keep a few GiB of headroom.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from megatron_vl.config.model import VLModelConfig
from megatron_vl.config.training import RecomputeSettings
from megatron_vl.training.flops import language_forward_flops, training_flops
from megatron_vl.training.parameter_count import StageParameters, stage_parameters
from megatron_vl.training.run_config import RunConfig

GIB = 1024**3
LOGIT_BYTES = 4
"""megatron's vocab-parallel cross-entropy keeps its softmax in fp32 for the backward."""
ASSUMED_MFU = 0.40
"""The model FLOPs utilisation the step-time estimate assumes (about what a 7B reaches on H100s with TE)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MemoryEstimate:
    """Bytes one GPU holds at its peak, by what they are."""

    parameters: int
    """Model parameters (bf16, or fp32 in fp32 runs), frozen ones included."""
    gradients: int
    """fp32 gradient buffers of the trained parameters."""
    optimizer_state: int
    """fp32 main parameters and Adam moments of the trained parameters (this DP rank's share)."""
    activations: int
    """Saved activations of the in-flight micro-batches plus one recompute working set."""

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def gib(self) -> dict[str, float]:
        """Every part and the total in GiB, to two decimals."""
        parts = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {name: round(value / GIB, 2) for name, value in (*parts.items(), ("total", self.total))}


@dataclasses.dataclass(frozen=True, kw_only=True)
class StagePlan:
    """One pipeline stage, as one of its GPUs sees it."""

    pipeline_stage: int
    """0 for the first stage (which holds the ViT and the projector)."""
    language_layers: int
    """LLM layers on the stage."""
    parameters: StageParameters
    """Parameters on one GPU (this TP rank's shards), per module."""
    trained_parameters: int
    """Of those, the ones that train (get gradients and optimizer state)."""
    in_flight_micro_batches: int
    """Micro-batches whose activations the 1F1B schedule holds at once on this stage."""
    memory: MemoryEstimate
    """Estimated peak bytes on one GPU."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepTimeEstimate:
    """How long an optimizer step takes at an assumed MFU (see the module docstring)."""

    model_flops_per_gpu: float
    """Model FLOPs of one step's global batch (LLM, one document per row), over the world's GPUs."""
    recompute_flops_per_gpu: float
    """The forward that full activation recompute runs again, per GPU."""
    assumed_mfu: float
    """Share of the peak the GPU's work runs at."""
    peak_flops: float | None
    """The GPU's dense bf16 peak FLOP/s; None when unknown (no time is estimated)."""
    pipeline_bubble_fraction: float
    """Share of the step the pipeline idles."""

    @property
    def seconds(self) -> float | None:
        if not self.peak_flops:
            return None
        busy = (self.model_flops_per_gpu + self.recompute_flops_per_gpu) / (self.peak_flops * self.assumed_mfu)
        return busy / (1 - self.pipeline_bubble_fraction)

    def to_dict(self) -> dict:
        seconds = self.seconds
        return {
            "seconds": None if seconds is None else round(seconds, 3),
            "model_tflops_per_gpu": round(self.model_flops_per_gpu / 1e12, 2),
            "recompute_tflops_per_gpu": round(self.recompute_flops_per_gpu / 1e12, 2),
            "assumed_mfu": self.assumed_mfu,
            "peak_tflops": None if self.peak_flops is None else round(self.peak_flops / 1e12),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunPlan:
    """A run's schedule and per-GPU memory at one world size."""

    world_size: int
    """Ranks (GPUs) of the run."""
    data_parallel: int
    """Model replicas: world size / (TP x PP x CP)."""
    context_parallel: int
    """Ranks that split every micro-batch (CP)."""
    tokens_per_gpu: int
    """LLM tokens of one micro-batch one GPU holds: micro_batch x seq_len / CP."""
    micro_batches_per_step: int
    """Micro-batches each DP rank runs per optimizer step."""
    pipeline_bubble_fraction: float
    """Share of each step the 1F1B pipeline idles: (PP - 1) / (m + PP - 1); 0 without PP."""
    stages: tuple[StagePlan, ...]
    """Every pipeline stage, first first."""
    step_time: StepTimeEstimate
    """The estimated step time."""

    @property
    def worst_stage(self) -> StagePlan:
        """The stage whose GPUs need the most memory."""
        return max(self.stages, key=lambda stage: stage.memory.total)

    def to_dict(self) -> dict:
        """The ``plan`` object ``train --dry-run`` prints: memory in GiB, the worst stage first-class."""
        worst = self.worst_stage
        return {
            "world_size": self.world_size,
            "data_parallel": self.data_parallel,
            "context_parallel": self.context_parallel,
            "tokens_per_gpu": self.tokens_per_gpu,
            "micro_batches_per_step": self.micro_batches_per_step,
            "pipeline_bubble_fraction": round(self.pipeline_bubble_fraction, 4),
            "estimated_step": self.step_time.to_dict(),
            "memory_gib_per_gpu": {"pipeline_stage": worst.pipeline_stage, **worst.memory.gib()},
            "pipeline_stages": [
                {
                    "pipeline_stage": stage.pipeline_stage,
                    "language_layers": stage.language_layers,
                    "parameters_per_gpu": dataclasses.asdict(stage.parameters),
                    "trained_parameters_per_gpu": stage.trained_parameters,
                    "in_flight_micro_batches": stage.in_flight_micro_batches,
                    "memory_gib_per_gpu": stage.memory.gib(),
                }
                for stage in self.stages
            ],
        }


def pipeline_bubble_fraction(pipeline_parallel: int, micro_batches: int) -> float:
    """Idle share of a 1F1B step: the pipeline fills and drains over PP - 1 of its m + PP - 1 slots."""
    return (pipeline_parallel - 1) / (micro_batches + pipeline_parallel - 1)


@dataclasses.dataclass(frozen=True)
class _Activations:
    """Elements a block of layers saves per micro-batch (``kept``) and needs on top during the backward
    of one micro-batch (``working``, the recomputed chunk)."""

    kept: float
    working: float


def _transformer_block(
    layers: int, tokens: int, hidden: int, qkv_width: int, ffn: int, *, tp: int, sequence_parallel: bool,
    recompute: RecomputeSettings,
) -> _Activations:
    sequence_split = tp if sequence_parallel else 1
    layer_input = tokens * hidden / sequence_split
    layer = 4 * layer_input + tokens * (qkv_width + hidden + 3 * ffn) / tp
    if not recompute.enabled:
        return _Activations(kept=layers * layer, working=0.0)
    chunk = min(recompute.num_layers, layers)
    if recompute.method == "uniform":
        return _Activations(kept=math.ceil(layers / chunk) * layer_input, working=chunk * layer)
    return _Activations(kept=chunk * layer_input + (layers - chunk) * layer, working=layer)


def _stage_activation_bytes(
    run: RunConfig, stage: int, layers: int, in_flight: int, *, element_bytes: int
) -> int:
    recipe, model = run.recipe, run.model
    parallel = recipe.parallel
    tp, sp = parallel.tensor_parallel, parallel.sequence_parallel
    cp = parallel.context_parallel
    tokens = recipe.seq_len * recipe.micro_batch_size // cp
    language = model.language
    qkv_width = (language.num_attention_heads + 2 * language.num_query_groups) * language.head_dim
    blocks = [_transformer_block(
        layers, tokens, language.hidden_size, qkv_width, language.ffn_hidden_size, tp=tp, sequence_parallel=sp,
        recompute=recipe.recompute,
    )]
    extra_kept = 0.0
    logit_bytes = 0.0
    frozen = recipe.trains.frozen
    if stage == 0:
        patches = _vision_patches(model, tokens * cp) // cp
        vision = model.vision
        if not frozen["vision"]:
            blocks.append(_transformer_block(
                vision.num_layers, patches, vision.hidden_size, 3 * vision.hidden_size, vision.ffn_hidden_size, tp=tp,
                sequence_parallel=sp, recompute=recipe.recompute,
            ))
        if not (frozen["vision"] and frozen["projector"]):
            merged_tokens = patches // vision.spatial_merge_size**2
            # The patch norm's and fc1's inputs are whole on every TP rank (no SP); GELU's input and output are split.
            extra_kept += 2 * patches * vision.hidden_size + 2 * merged_tokens * model.projector.ffn_hidden_size / tp
    if stage == parallel.pipeline_parallel - 1:
        extra_kept += 2 * tokens * language.hidden_size / (tp if sp else 1)
        logit_bytes = tokens * language.padded_vocab_size(tp) / tp * LOGIT_BYTES
    kept = sum(block.kept for block in blocks) + extra_kept
    working = max(block.working for block in blocks)
    return round(in_flight * (kept * element_bytes + logit_bytes) + working * element_bytes)


def _vision_patches(model: VLModelConfig, tokens: int) -> int:
    """ViT patches of a micro-batch in the worst case: every LLM token an image token of merge² patches."""
    return tokens * model.vision.spatial_merge_size**2


def plan_run(run: RunConfig, world_size: int) -> RunPlan:
    """The plan of ``run`` on ``world_size`` ranks; ``ValueError`` naming the fix when the layout or the
    global batch does not divide over them."""
    recipe = run.recipe
    parallel = recipe.parallel
    data_parallel = parallel.data_parallel_size(world_size)
    micro_batches = run.data.micro_batches_per_step(data_parallel)
    pp = parallel.pipeline_parallel
    param_bytes = 2 if run.bf16 else 4
    optimizer_bytes = 12 if run.bf16 else 8
    optimizer_share = data_parallel * parallel.context_parallel if recipe.optimizer.distributed else 1
    frozen = recipe.trains.frozen
    stages = []
    for index, (params, layers) in enumerate(
        zip(stage_parameters(run.model, parallel), run.model.layers_per_pipeline_stage(parallel), strict=True)
    ):
        trained = sum(getattr(params, module) for module, is_frozen in frozen.items() if not is_frozen)
        in_flight = min(pp - index, micro_batches)
        memory = MemoryEstimate(
            parameters=params.total * param_bytes,
            gradients=trained * 4,
            optimizer_state=math.ceil(trained * optimizer_bytes / optimizer_share),
            activations=_stage_activation_bytes(run, index, layers, in_flight, element_bytes=param_bytes),
        )
        stages.append(StagePlan(
            pipeline_stage=index, language_layers=layers, parameters=params, trained_parameters=trained,
            in_flight_micro_batches=in_flight, memory=memory,
        ))
    bubble = pipeline_bubble_fraction(pp, micro_batches)
    return RunPlan(
        world_size=world_size,
        data_parallel=data_parallel,
        context_parallel=parallel.context_parallel,
        tokens_per_gpu=recipe.seq_len * recipe.micro_batch_size // parallel.context_parallel,
        micro_batches_per_step=micro_batches,
        pipeline_bubble_fraction=bubble,
        stages=tuple(stages),
        step_time=estimate_step_time(run, world_size, bubble),
    )


def estimate_step_time(run: RunConfig, world_size: int, bubble: float) -> StepTimeEstimate:
    """The step time of ``run`` on ``world_size`` GPUs at ``ASSUMED_MFU`` (see the module docstring)."""
    recipe = run.recipe
    rows = torch.arange(0, recipe.global_batch_size + 1) * recipe.seq_len
    empty = torch.zeros(0, 3, dtype=torch.int64)
    model_flops = training_flops(run.model, recipe.trains.frozen, rows, empty)
    settings = recipe.recompute
    recompute = 0.0
    if settings.enabled:
        stage_layers = run.model.layers_per_pipeline_stage(recipe.parallel)
        recomputed = sum(layers if settings.method == "uniform" else min(settings.num_layers, layers)
                         for layers in stage_layers)
        recompute = language_forward_flops(run.model, rows)[0] * recomputed / sum(stage_layers)
    return StepTimeEstimate(
        model_flops_per_gpu=model_flops / world_size, recompute_flops_per_gpu=recompute / world_size,
        assumed_mfu=ASSUMED_MFU, peak_flops=run.platform.peak_flops, pipeline_bubble_fraction=bubble,
    )
