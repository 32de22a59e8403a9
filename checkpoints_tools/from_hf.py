"""Import Hugging Face weights as a megatron-vl dist checkpoint at a given TP / PP: where a stage starts.

    python -m checkpoints_tools.from_hf --hf MiMo-VL-7B --out runs/stage2/init --tp 4 --pp 2
    python -m checkpoints_tools.from_hf --vision Qwen2.5-VL-7B --llm MiMo-7B-Base --out runs/stage1/init --tp 4 --pp 2

``--hf`` takes a whole Qwen2.5-VL / MiMo-VL checkpoint. ``--vision`` + ``--llm`` assemble stage 1's start:
the ViT of a Qwen2.5-VL checkpoint, a text-only Qwen2 / MiMo-7B-Base LLM (its multi-token-prediction layers
left out, with a message) and a freshly initialised projector. The model config comes from the config.json
files (``--preset`` insists on one of ours and names any tensor that does not fit it), the tokenizer from
``--tokenizer`` (default: the --hf / --llm folder), the image settings from preprocessor_config.json.

The output follows ``megatron_vl/training/checkpoint_files.py``: ``OUT/iter_NNNNNNN/`` (written as
``.partial`` and renamed when complete) holding the dist checkpoint with the chunks megatron writes at that
TP / PP, the run record and the tokenizer, then the ``latest`` marker. Safetensors are read one tensor at a
time and each weight group is converted when the writer reaches it: memory stays at a few tensors.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch

from checkpoints_tools.dist_placement import extra_states, placements
from checkpoints_tools.dist_writer import write_dist_checkpoint
from checkpoints_tools.hf_folder_files import read_image_settings, read_json
from checkpoints_tools.hf_sources import WeightSource, from_parts, whole_model
from checkpoints_tools.hf_tensor_names import expected_shapes, saved_name
from checkpoints_tools.safetensors_files import SafetensorsCheckpoint
from megatron_vl.command_line import human_bytes, run_command
from megatron_vl.config.model import PRESETS, VLModelConfig, model_preset
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.files import publish_directory
from megatron_vl.models import hf_config
from megatron_vl.models.hf_mapping import weight_rules
from megatron_vl.progress import ProgressBar
from megatron_vl.tokenizer import Tokenizer, load_tokenizer
from megatron_vl.training import checkpoint_files

WRITTEN_BY = "checkpoints_tools.from_hf"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportRequest:
    """What to import and how to lay it out."""

    out: Path
    """Checkpoint root to write ``iter_NNNNNNN`` into."""
    hf: Path | None = None
    """A whole Qwen2.5-VL / MiMo-VL folder, or None when importing from parts."""
    vision: Path | None = None
    """A Qwen2.5-VL folder whose ViT is taken (parts)."""
    llm: Path | None = None
    """A text-only Qwen2 / MiMo-7B-Base folder (parts)."""
    tokenizer: Path | None = None
    """Tokenizer folder or file; default the --hf or --llm folder."""
    tensor_parallel: int = 1
    """TP size the checkpoint is laid out for."""
    pipeline_parallel: int = 1
    """PP size the checkpoint is laid out for."""
    first_stage_layers: int | None = None
    """LLM layers on the first pipeline stage (None: an even split)."""
    preset: str | None = None
    """Insist that the checkpoint is this preset (``tiny``, ``mimo_vl_7b``)."""
    dtype: str | None = None
    """``fp32`` / ``bf16``; default the checkpoint's dtype."""
    iteration: int = 0
    """Iteration number of the written checkpoint."""
    mrope_section: tuple[int, int, int] | None = None
    """M-RoPE sections for a text-only LLM (default: Qwen2.5-VL's proportions)."""
    seed: int = 0
    """Seed of the fresh projector (parts)."""

    def __post_init__(self) -> None:
        if (self.hf is None) == (self.vision is None and self.llm is None):
            raise ValueError("pass either --hf (a whole Qwen2.5-VL checkpoint) or both --vision and --llm")
        if self.hf is None and (self.vision is None or self.llm is None):
            raise ValueError("importing from parts needs both --vision (a Qwen2.5-VL folder) and --llm (a text-only LLM)")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown --preset {self.preset!r}; choose one of {sorted(PRESETS)}")

    @property
    def parallel(self) -> ParallelConfig:
        """The layout the checkpoint is written for."""
        return ParallelConfig(
            tensor_parallel=self.tensor_parallel,
            pipeline_parallel=self.pipeline_parallel,
            first_pipeline_stage_language_layers=self.first_stage_layers,
        )


def _config_from_files(request: ImportRequest, tokenizer: Tokenizer) -> tuple[VLModelConfig, bool]:
    """Our config from the config.json file(s), and whether the LLM ties its output layer to its embedding."""
    ids = {"image_token_id": tokenizer.image_pad_id, "video_token_id": tokenizer.video_pad_id}
    if request.hf is not None:
        path = request.hf / "config.json"
        config_json = read_json(path, "--hf")
        dtype = hf_config.dtype_from_hf(config_json, request.dtype)
        config = hf_config.from_hf_config(config_json, str(path), dtype=dtype, **ids)
        for field, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>")):
            declared = config_json.get(field, ids[field])
            if declared != ids[field]:
                raise ValueError(
                    f"{path} says {field} {declared} but the tokenizer's {token} is {ids[field]}; "
                    "pass the tokenizer this model was trained with (--tokenizer)"
                )
        tied = False
    else:
        vision_json = read_json(request.vision / "config.json", "--vision")
        llm_json = read_json(request.llm / "config.json", "--llm")
        dtype = hf_config.dtype_from_hf(llm_json, request.dtype)
        config = hf_config.from_hf_parts(
            vision_json, llm_json, str(request.llm), dtype=dtype, **ids,
            mrope_section=request.mrope_section,
        )
        tied = bool(llm_json.get("tie_word_embeddings", False))
    return config, tied


def _check_shapes_and_preset(request: ImportRequest, source: WeightSource, config: VLModelConfig, found: VLModelConfig) -> None:
    differences = hf_config.config_differences(config, found) if request.preset else []
    shapes = expected_shapes(config)
    for name, shape in shapes.items():
        if name in source.shapes and tuple(source.shapes[name]) != shape:
            fix = (
                f"this checkpoint is not --preset {request.preset}: drop --preset to take the shape from config.json, "
                "or choose the preset it was trained as"
                if request.preset else "its config.json does not describe its weights: restore the matching config.json"
            )
            raise ValueError(
                f"tensor {source.origin[name]} has shape {list(source.shapes[name])} but the model expects "
                f"{list(shape)} ({saved_name(name)}); {fix}"
            )
    if differences:
        raise ValueError(
            f"the checkpoint's config.json differs from --preset {request.preset}: {'; '.join(differences)}; drop --preset "
            "to use the checkpoint's own config"
        )


def import_checkpoint(request: ImportRequest, *, progress: bool = True) -> dict:
    """Convert; returns a summary (directory, tensors, bytes, seconds, notes)."""
    start = time.perf_counter()
    tokenizer_path = request.tokenizer or request.hf or request.llm
    tokenizer = load_tokenizer(tokenizer_path)
    found, tied = _config_from_files(request, tokenizer)
    config = found
    if request.preset is not None:
        config = model_preset(
            request.preset, image_token_id=tokenizer.image_pad_id, video_token_id=tokenizer.video_pad_id,
            dtype=found.dtype,
        )
    parallel = request.parallel
    config.validate_parallel(parallel)
    settings = read_image_settings(request.hf or request.vision)

    rules = weight_rules(config)
    needed = [name for rule in rules for name in rule.hf]
    if request.hf is not None:
        source = whole_model(SafetensorsCheckpoint(request.hf), needed)
    else:
        source = from_parts(
            SafetensorsCheckpoint(request.vision), SafetensorsCheckpoint(request.llm), needed, expected_shapes(config),
            tied_embeddings=tied, init_std=config.init_method_std, seed=request.seed,
        )
    _check_shapes_and_preset(request, source, config, found)
    source.check(needed, str(request.hf) if request.hf else f"{request.vision} + {request.llm}")
    if tokenizer.vocab_size > config.language.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the LLM's vocabulary is {config.language.vocab_size}; "
            "pass the tokenizer this LLM was trained with"
        )

    target = checkpoint_files.iteration_dir(request.out, request.iteration)
    if target.exists():
        raise ValueError(f"{target} already exists; choose another --out or --iteration")
    partial = checkpoint_files.partial_dir(request.out, request.iteration)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    items = placements(config)
    groups = [tuple(items[name] for name in rule.megatron) for rule in rules]
    dtype = getattr(torch, config.dtype)
    bar = ProgressBar(total=len(rules), desc="tensor groups", unit="group", enabled=progress)
    read_bytes = 0

    def convert(index: int) -> dict[str, torch.Tensor]:
        nonlocal read_bytes
        rule = rules[index]
        inputs = [source.loaders[name]() for name in rule.hf]
        read_bytes += sum(tensor.numel() * tensor.element_size() for tensor in inputs)
        bar.update(1)
        return {name: tensor.to(dtype) for name, tensor in zip(rule.megatron, rule.from_hf(*inputs))}

    write_dist_checkpoint(partial, groups, extra_states(config), tensor_parallel=request.tensor_parallel,
                          dtype=dtype, convert=convert)
    bar.close()
    tokenizer.save_hf(str(partial / checkpoint_files.TOKENIZER_DIR))
    checkpoint_files.write_run_record(partial, checkpoint_files.run_record(
        model=config,
        parallel=parallel,
        iteration=request.iteration,
        image_settings=settings,
        tokenizer_fingerprint=tokenizer.fingerprint,
        written_by=WRITTEN_BY,
        sources={key: str(value) for key, value in (("hf", request.hf), ("vision", request.vision), ("llm", request.llm))
                 if value is not None},
        notes=source.notes,
    ))
    publish_directory(partial, target)
    checkpoint_files.write_latest_iteration(request.out, request.iteration)
    written = sum(path.stat().st_size for path in target.glob("*.distcp"))
    return {
        "directory": target, "tensors": len(items), "groups": len(rules), "read_bytes": read_bytes,
        "written_bytes": written, "notes": source.notes, "seconds": time.perf_counter() - start,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints_tools.from_hf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_argument_group("source: --hf, or --vision with --llm")
    source.add_argument("--hf", type=Path, help="a whole Qwen2.5-VL / MiMo-VL folder")
    source.add_argument("--vision", type=Path, help="a Qwen2.5-VL folder whose ViT is taken")
    source.add_argument("--llm", type=Path, help="a text-only Qwen2 / MiMo-7B-Base folder")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder or file (default: the --hf or --llm folder)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint root to create iter_NNNNNNN in")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size to lay the checkpoint out for")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel size to lay the checkpoint out for")
    parser.add_argument("--first-stage-layers", type=int, help="LLM layers on the first pipeline stage (default: even)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="insist on one of our model presets")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], help="dtype of the written weights (default: the checkpoint's)")
    parser.add_argument("--iteration", type=int, default=0, help="iteration number of the written checkpoint (default 0)")
    parser.add_argument("--mrope-section", type=int, nargs=3, metavar=("T", "H", "W"),
                        help="M-RoPE sections for a text-only LLM (default: Qwen2.5-VL's proportions)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh projector (default 0)")
    return parser


def run(args: argparse.Namespace) -> int:
    request = ImportRequest(
        out=args.out, hf=args.hf, vision=args.vision, llm=args.llm, tokenizer=args.tokenizer, tensor_parallel=args.tp,
        pipeline_parallel=args.pp, first_stage_layers=args.first_stage_layers, preset=args.preset, dtype=args.dtype,
        iteration=args.iteration, mrope_section=tuple(args.mrope_section) if args.mrope_section else None, seed=args.seed,
    )
    summary = import_checkpoint(request)
    for note in summary["notes"]:
        print(f"note: {note}")
    print(
        f"wrote {summary['directory']} (TP={args.tp}, PP={args.pp}): {summary['tensors']} tensors in {summary['groups']} "
        f"groups, read {human_bytes(summary['read_bytes'])}, wrote {human_bytes(summary['written_bytes'])}, "
        f"{summary['seconds']:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
