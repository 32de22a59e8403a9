"""``train --dry-run``: the resolved run config and its ``plan`` as the GPU run will have them, printed as JSON.

Runs anywhere (a login node, a laptop): without a tokenizer at the path, the model preset's ``<|image_pad|>``
and ``<|video_pad|>`` ids stand in; without a GPU here, the config is built for the cluster's (``CLUSTER_GPU``, Transformer Engine,
bf16 under ``precision="auto"``) unless ``--dry-run-platform here`` asks for this machine's. The printed
object is the run config (``config.json``'s fields) plus ``plan`` (``training/run_plan.py``) with the world
size it is for, where that came from, and notes on what stood in. The notes also go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from megatron_vl.config.model import model_preset
from megatron_vl.config.serialization import config_to_dict
from megatron_vl.runtime.platform import Platform, detect_platform, peak_flops_of
from megatron_vl.runtime.world_size import planned_world_size
from megatron_vl.tokenizer import load_tokenizer
from megatron_vl.tokenizer.special_tokens import TRAINED_SPECIAL_IDS
from megatron_vl.training.run_config import resolve_run
from megatron_vl.training.run_plan import plan_run

CLUSTER_GPU = "NVIDIA H200"
"""The accelerator the launch scripts' runs are planned for."""
PRESET_PLACEHOLDER_IDS = {
    "mimo_vl_7b": (151655, 151656),
    "tiny": (TRAINED_SPECIAL_IDS["<|image_pad|>"], TRAINED_SPECIAL_IDS["<|video_pad|>"]),
}
"""``(<|image_pad|>, <|video_pad|>)`` of the tokenizer each preset trains with: the Qwen2 tokenizer's for
``mimo_vl_7b``, the ``data_prep train-tokenizer`` one's for ``tiny``."""
PLATFORM_CHOICES = ("gpu", "here")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PresetTokenIds:
    """What ``resolve_run`` reads of a tokenizer, taken from the model preset when no tokenizer is at hand."""

    image_pad_id: int
    """The preset's ``<|image_pad|>`` id."""
    video_pad_id: int
    """The preset's ``<|video_pad|>`` id."""
    vocab_size: int
    """The preset's vocabulary (a real tokenizer may use fewer ids)."""


def cluster_platform(layer_backend: str) -> Platform:
    """The platform of the cluster run: CUDA on ``CLUSTER_GPU`` with Transformer Engine layers, unless the
    ``layer_backend`` setting asks for the local ones."""
    return Platform(
        device="cuda", device_name=CLUSTER_GPU, layer_backend="local" if layer_backend == "local" else "transformer_engine",
        peak_flops=peak_flops_of(CLUSTER_GPU),
    )


def dry_run_document(args, recipe, paths) -> dict:
    """The JSON object ``--dry-run`` prints for ``recipe`` (overrides applied) and ``paths``."""
    notes = []
    if os.path.exists(paths.tokenizer):
        tokenizer = load_tokenizer(paths.tokenizer)
    else:
        if recipe.model not in PRESET_PLACEHOLDER_IDS:
            raise ValueError(
                f"no tokenizer at {paths.tokenizer}, and the model {recipe.model!r} has no known <|image_pad|> and "
                "<|video_pad|> ids; pass --tokenizer"
            )
        image_pad_id, video_pad_id = PRESET_PLACEHOLDER_IDS[recipe.model]
        vocab_size = model_preset(
            recipe.model, image_token_id=image_pad_id, video_token_id=video_pad_id
        ).language.vocab_size
        tokenizer = PresetTokenIds(image_pad_id=image_pad_id, video_pad_id=video_pad_id, vocab_size=vocab_size)
        notes.append(f"no tokenizer at {paths.tokenizer}: the {recipe.model} preset's <|image_pad|> id {image_pad_id} "
                     f"and <|video_pad|> id {video_pad_id} stand in")
    # The local backend imports nothing: it only asks whether a GPU is here.
    if detect_platform("local").on_gpu or args.dry_run_platform == "here":
        platform = detect_platform(args.layer_backend)
    else:
        platform = cluster_platform(args.layer_backend)
        notes.append(f"no GPU here: planned for the cluster's {CLUSTER_GPU} with Transformer Engine "
                     "(--dry-run-platform here for this machine's platform)")
    run = resolve_run(recipe, paths, tokenizer, platform)
    world_size, source = planned_world_size(
        given=args.world_size, environ=os.environ, stage=recipe.name, model=recipe.model,
        model_parallel_size=recipe.parallel.model_parallel_size,
    )
    plan = {**plan_run(run, world_size).to_dict(), "world_size_from": source, "notes": notes}
    return {**config_to_dict(run), "plan": plan}


def print_dry_run(args, recipe, paths) -> int:
    """Print the dry run's JSON on stdout and its notes on stderr."""
    document = dry_run_document(args, recipe, paths)
    for note in document["plan"]["notes"]:
        print(f"dry run: {note}", file=sys.stderr)
    print(json.dumps(document, indent=2))
    return 0
