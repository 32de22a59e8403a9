"""A curriculum stage as a typed recipe: what trains at which LR, on which blend, for how many tokens,
from which checkpoint, at which parallel layout.

The stage recipes live one per file in ``megatron_vl/config/recipes/`` (``stage1_projector.py`` ...
``stage4_32k.py``); each has ``recipe(model)`` giving the ``mimo_vl_7b`` cluster recipe or the ``tiny``
demo recipe. Data paths are not part of a recipe: a blend names packed datasets by kind, found under
the data root as ``packed_dataset_dir`` says.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import re
from pathlib import Path

from megatron_vl.config.model import PRESETS
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.training import (
    PRECISIONS,
    BenchmarkSettings,
    CheckpointSettings,
    EvalSettings,
    LoggingSettings,
    LRSchedule,
    OptimizerSettings,
    RecomputeSettings,
    TrainedModules,
)
from megatron_vl.config.validation import (
    batch_sizes,
    blend_weight,
    distinct_blend,
    non_negative_int,
    one_of,
    positive_int,
)
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.storage import is_url, join_location

STAGES = ("stage1_projector", "stage2_vit", "stage3_multimodal", "stage4_32k")
WARMUP_STAGE = "stage0_language"
"""The LLM's text-only warm-up before stage 1, for a model whose LLM starts from random weights (``tiny``)."""
EVAL_DATASET = "eval"
FROM_HF = "from_hf"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def benchmark_file_paths(data_root: str | os.PathLike, files: tuple[str, ...]) -> tuple[str, ...]:
    """The recipe's benchmark files as absolute local paths: relative ones are under the data root."""
    data_root = os.fspath(data_root)
    resolved = []
    for path in files:
        if not os.path.isabs(path):
            if is_url(data_root):
                raise ValueError(
                    f"benchmark file {path} is relative to the data root {data_root}, a URL; benchmarks are read from "
                    "local files: give its absolute path in benchmarks.files"
                )
            path = os.path.join(data_root, path)
        resolved.append(os.path.abspath(path))
    return tuple(resolved)


def packed_dataset_dir(data_root: str | os.PathLike, seq_len: int, kind: str) -> str:
    """Where a recipe finds the packed dataset of ``kind`` at ``seq_len``: ``DATA_ROOT/packed/<seq_len>/<kind>``, a
    path, or a URL when the data root is one (``s3://bucket/data`` -> ``s3://bucket/data/packed/8192/caption``).

    Kinds used by the recipes: ``caption``, ``interleaved``, ``text``, ``ocr``, ``grounding``, ``cot``,
    ``video_caption``, ``video_grounding``, ``gui``, ``long`` (stage 4's long documents and reasoning),
    ``video_long`` (stage 4's long videos), and ``eval`` (the held-out set).
    """
    return join_location(os.fspath(data_root), "packed", str(seq_len), kind)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlendComponent:
    """One packed dataset of a stage's blend, named by kind, and its share of the samples."""

    kind: str
    """Folder name under ``DATA_ROOT/packed/<seq_len>/`` (see ``packed_dataset_dir``)."""
    weight: float
    """Relative share of the sequences drawn from it."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _NAME.fullmatch(self.kind):
            raise ValueError(f"BlendComponent.kind={self.kind!r} must be a folder name such as 'caption'")
        blend_weight("BlendComponent", self.kind, self.weight)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageRecipe:
    """One curriculum stage, complete except for paths (data root, checkpoint root, tokenizer)."""

    name: str
    """The stage's name; its checkpoints go to ``CHECKPOINT_ROOT/<name>``."""
    model: str
    """Model preset, a name in ``megatron_vl.config.model.PRESETS`` (``tiny``, ``mimo_vl_7b``)."""
    trains: TrainedModules
    """Which parts train, at which peak LR; the others are frozen."""
    blend: tuple[BlendComponent, ...]
    """Packed datasets (by kind) and their weights."""
    seq_len: int
    """Tokens per packed sequence; the datasets must have been packed at this length."""
    global_batch_size: int
    """Sequences per optimizer step over all data-parallel ranks."""
    micro_batch_size: int = 1
    """Sequences per forward pass on one rank."""
    train_tokens: int
    """Token budget of the stage: iterations = ceil(train_tokens / (global_batch_size x seq_len))."""
    init_from: str | None
    """Where a new stage's weights come from: a stage name (``CHECKPOINT_ROOT/<name>``), ``from_hf``
    (``CHECKPOINT_ROOT/from_hf``, written by ``checkpoints_tools.from_hf``), an absolute checkpoint
    directory, or None for random weights. Only model weights are taken; a resumed stage ignores it."""
    parallel: ParallelConfig
    """Tensor / pipeline / sequence parallel layout and the pipeline split; data parallelism takes the remaining ranks."""
    precision: str = "auto"
    """``bf16`` (megatron mixed precision, fp32 main params), ``fp32``, or ``auto``: bf16 on GPU, fp32 on CPU."""
    optimizer: OptimizerSettings = OptimizerSettings()
    """AdamW settings."""
    schedule: LRSchedule = LRSchedule()
    """Warmup and decay of every module's LR."""
    recompute: RecomputeSettings = RecomputeSettings()
    """Activation recompute."""
    checkpoint: CheckpointSettings = CheckpointSettings()
    """Checkpoint interval, retention, async saving."""
    logging: LoggingSettings = LoggingSettings()
    """Console / TensorBoard interval and the MFU denominator."""
    eval: EvalSettings = EvalSettings()
    """Held-out loss interval and size."""
    benchmarks: BenchmarkSettings = BenchmarkSettings()
    """Benchmark scores of the saved checkpoints during training; off by default."""
    image_settings: ImageSettings = ImageSettings()
    """Image preprocessing the packed datasets were made with."""
    seed: int = 1234
    """Seeds weight initialisation and the data order."""
    num_workers: int = 2
    """DataLoader processes per rank decoding images."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"StageRecipe.name={self.name!r} must be a folder name such as 'stage1_projector'")
        owner = f"StageRecipe {self.name}"
        one_of(owner, "model", self.model, PRESETS)
        blend = tuple(
            component if isinstance(component, BlendComponent) else BlendComponent(kind=component[0], weight=component[1])
            for component in self.blend
        )
        object.__setattr__(self, "blend", blend)
        kinds = [component.kind for component in blend]
        distinct_blend(owner, kinds)
        if EVAL_DATASET in kinds:
            raise ValueError(f"{owner}: the blend must not include the held-out '{EVAL_DATASET}' set")
        positive_int(owner, "seq_len", self.seq_len)
        multiple = self.parallel.sequence_multiple
        if self.seq_len % multiple:
            raise ValueError(
                f"{owner}: seq_len={self.seq_len} is not a multiple of {multiple}, which context parallelism over "
                f"{self.parallel.context_parallel} ranks (2 x CP) and sequence parallelism over TP need; choose a "
                f"sequence length that is a multiple of {multiple}"
            )
        positive_int(owner, "train_tokens", self.train_tokens)
        non_negative_int(owner, "num_workers", self.num_workers)
        batch_sizes(owner, self.global_batch_size, self.micro_batch_size)
        if self.train_iterations < 2:
            raise ValueError(
                f"{owner}: train_tokens={self.train_tokens} is less than two steps of global_batch_size x seq_len "
                f"= {self.tokens_per_iteration} tokens each; raise train_tokens to at least {2 * self.tokens_per_iteration}"
            )
        one_of(owner, "precision", self.precision, PRECISIONS)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ValueError(f"StageRecipe {self.name}: init_from must be a stage name, 'from_hf', a path or None")
        every = self.benchmarks.every
        if every is not None and every % self.checkpoint.save_every:
            raise ValueError(
                f"{owner}: benchmarks.every={every} is not a multiple of checkpoint.save_every="
                f"{self.checkpoint.save_every}; the benchmarks score the checkpoint saved at that iteration: set "
                f"benchmarks.every to a multiple of {self.checkpoint.save_every}"
            )
        if self.init_from == self.name:
            raise ValueError(
                f"StageRecipe {self.name}: init_from names the stage itself; a stage resumes from its own "
                "checkpoints by itself, init_from names the previous stage"
            )

    @property
    def tokens_per_iteration(self) -> int:
        return self.global_batch_size * self.seq_len

    @property
    def train_iterations(self) -> int:
        """Optimizer steps of the stage: the token budget over tokens per step, rounded up."""
        return math.ceil(self.train_tokens / self.tokens_per_iteration)


def load_recipe(recipe: str, model: str) -> StageRecipe:
    """The recipe of a stage: a name in ``megatron_vl/config/recipes`` (``stage1_projector``), a module
    (``my_project.recipes.stage1``) or a ``.py`` file, whose ``recipe(model)`` is called."""
    if recipe.endswith(".py"):
        if not os.path.isfile(recipe):
            raise ValueError(f"recipe file {recipe} does not exist")
        spec = importlib.util.spec_from_file_location(Path(recipe).stem, recipe)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        name = recipe if "." in recipe else f"megatron_vl.config.recipes.{recipe}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name and not name.startswith(f"{error.name}."):
                raise
            raise ValueError(
                f"no recipe {recipe!r}: give one of {STAGES}, a module path or a .py file defining recipe(model)"
            ) from None
    if not callable(getattr(module, "recipe", None)):
        raise ValueError(f"recipe module {module.__name__} has no function recipe(model) returning a StageRecipe")
    if model not in PRESETS:
        raise ValueError(f"--model {model!r}: choose one of {sorted(PRESETS)}")
    result = module.recipe(model)
    if not isinstance(result, StageRecipe):
        raise ValueError(f"{module.__name__}.recipe({model!r}) returned {type(result).__name__}, not a StageRecipe")
    return result
