"""A stage recipe made concrete for one run: paths, the model config, the data config, the iteration count.

Paths come from the command line, with defaults from environment variables (what ``launch/`` exports)::

    MVL_DATA_ROOT        packed datasets, read as DATA_ROOT/packed/<seq_len>/<kind>   (default ./data; may be a URL)
    MVL_CHECKPOINT_ROOT  one folder per stage: CHECKPOINT_ROOT/<stage>               (default ./checkpoints)
    MVL_LOG_ROOT         TensorBoard, metrics.jsonl and config.json: LOG_ROOT/<stage>  (default CHECKPOINT_ROOT/logs)
    MVL_TOKENIZER        tokenizer.json / .model or its folder                         (default DATA_ROOT/tokenizer)

The data root may be a URL (``s3://bucket/data``, ``https://host/data``): the loader reads the packed datasets from
there (``megatron_vl.data.storage``). The tokenizer and the checkpoint and log roots are local paths.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from megatron_vl.config.data import DataConfig
from megatron_vl.config.model import VLModelConfig, model_preset
from megatron_vl.config.recipe import EVAL_DATASET, StageRecipe, benchmark_file_paths, packed_dataset_dir
from megatron_vl.data.storage import is_url
from megatron_vl.runtime.platform import Platform
from megatron_vl.tokenizer import Tokenizer

PATH_ENVIRONMENT = {
    "data_root": "MVL_DATA_ROOT",
    "checkpoint_root": "MVL_CHECKPOINT_ROOT",
    "log_root": "MVL_LOG_ROOT",
    "tokenizer": "MVL_TOKENIZER",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunPaths:
    """Where a run reads and writes."""

    data_root: str
    """Root of the packed datasets (``packed/<seq_len>/<kind>`` below it): a local path or a URL."""
    checkpoint_root: str
    """Root of every stage's checkpoint folder."""
    log_root: str
    """Root of every stage's log folder."""
    tokenizer: str
    """The tokenizer the data was packed with."""

    @classmethod
    def from_environment(cls, environ=None, **given: str | None) -> "RunPaths":
        """Paths from ``given`` (command-line values), else the ``MVL_*`` variables, else the defaults."""
        environ = os.environ if environ is None else environ
        values = {name: given.get(name) or environ.get(variable) for name, variable in PATH_ENVIRONMENT.items()}
        values["data_root"] = values["data_root"] or "data"
        values["checkpoint_root"] = values["checkpoint_root"] or "checkpoints"
        values["log_root"] = values["log_root"] or os.path.join(values["checkpoint_root"], "logs")
        if is_url(values["data_root"]) and not values["tokenizer"]:
            raise ValueError(
                f"the data root {values['data_root']} is a URL and the tokenizer is read from a local path: give it "
                "with --tokenizer or MVL_TOKENIZER (e.g. a copy of DATA_ROOT/tokenizer)"
            )
        values["tokenizer"] = values["tokenizer"] or os.path.join(values["data_root"], "tokenizer")
        for name in ("checkpoint_root", "log_root", "tokenizer"):
            if is_url(values[name]):
                raise ValueError(
                    f"{PATH_ENVIRONMENT[name]} / --{name.replace('_', '-')} is the URL {values[name]}: only the data "
                    "root may be a URL; give a local (or shared-filesystem) path"
                )
        return cls(**{name: value if is_url(value) else os.path.abspath(value) for name, value in values.items()})


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one run of a stage needs, saved as JSON with the run and with each checkpoint."""

    recipe: StageRecipe
    """The stage recipe, overrides applied."""
    paths: RunPaths
    """Roots the run reads and writes."""
    model: VLModelConfig
    """The model, with the tokenizer's image and video placeholder ids and the run's dtype."""
    data: DataConfig
    """The blend as packed dataset directories, batch sizes, the held-out set."""
    checkpoint_dir: str
    """This stage's checkpoints: ``CHECKPOINT_ROOT/<stage>``."""
    log_dir: str
    """This stage's TensorBoard events, ``metrics.jsonl`` and ``config.json``: ``LOG_ROOT/<stage>``."""
    init_from: str | None
    """Checkpoint folder a new stage takes its weights from (None: random weights)."""
    train_iterations: int
    """Optimizer steps of the stage."""
    benchmark_files: tuple[str, ...]
    """The recipe's ``benchmarks.files`` as absolute paths (relative ones are under the data root)."""
    platform: Platform
    """The device, layer backend and collectives this run uses, decided once at start."""
    bf16: bool
    """Mixed precision (bf16 params and activations, fp32 main params and gradients); else fp32."""


def resolve_run(recipe: StageRecipe, paths: RunPaths, tokenizer: Tokenizer, platform: Platform) -> RunConfig:
    """The concrete run of ``recipe`` on ``platform``: dataset directories, checkpoint folders, the model for
    ``tokenizer``; ``precision="auto"`` is bf16 on a GPU and fp32 on the CPU."""
    bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and platform.on_gpu)
    model = model_preset(
        recipe.model, image_token_id=tokenizer.image_pad_id, video_token_id=tokenizer.video_pad_id,
        dtype="bfloat16" if bf16 else "float32",
    )
    if tokenizer.vocab_size > model.language.vocab_size:
        raise ValueError(
            f"tokenizer {paths.tokenizer} has {tokenizer.vocab_size} ids but the {recipe.model} model's vocabulary "
            f"holds {model.language.vocab_size}; train a smaller tokenizer or use a model preset that fits it"
        )
    model.validate_parallel(recipe.parallel)
    data = DataConfig(
        blend=[(str(packed_dataset_dir(paths.data_root, recipe.seq_len, c.kind)), c.weight) for c in recipe.blend],
        seq_len=recipe.seq_len,
        global_batch_size=recipe.global_batch_size,
        micro_batch_size=recipe.micro_batch_size,
        seed=recipe.seed,
        image_settings=recipe.image_settings,
        num_workers=recipe.num_workers,
        eval_path=str(packed_dataset_dir(paths.data_root, recipe.seq_len, EVAL_DATASET)) if recipe.eval.every else None,
        eval_samples=recipe.eval.samples if recipe.eval.every else None,
    )
    init_from = recipe.init_from
    if init_from is not None and not os.path.isabs(init_from):
        init_from = str(Path(paths.checkpoint_root) / init_from)
    return RunConfig(
        recipe=recipe,
        paths=paths,
        model=model,
        data=data,
        checkpoint_dir=str(Path(paths.checkpoint_root) / recipe.name),
        log_dir=str(Path(paths.log_root) / recipe.name),
        init_from=init_from,
        train_iterations=recipe.train_iterations,
        benchmark_files=benchmark_file_paths(paths.data_root, recipe.benchmarks.files),
        platform=platform,
        bf16=bf16,
    )
