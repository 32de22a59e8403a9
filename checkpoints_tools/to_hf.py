"""Export a megatron-vl dist checkpoint (any TP / PP) as a Hugging Face Qwen2.5-VL folder.

    python -m checkpoints_tools.to_hf --ckpt runs/stage3/checkpoints --out hf/stage3 [--iteration N] [--dtype bf16]

The folder loads with ``Qwen2_5_VLForConditionalGeneration.from_pretrained``, ``AutoTokenizer`` and
``AutoProcessor`` (and so vLLM, SGLang, lmms-eval): safetensors shards with an index in the layout Qwen2.5-VL
ships, ``config.json``, ``generation_config.json``, ``preprocessor_config.json`` (the run's image settings),
the run's tokenizer and the chat template. Tensors are converted one weight group at a time (e.g. one layer's
fused QKV into q, k, v), reading only the chunks that hold it: memory stays at a few tensors.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from checkpoints_tools.dist_placement import Placement, placements
from checkpoints_tools.dist_reader import DistCheckpointReader
from checkpoints_tools.hf_folder_files import write_hf_folder_files
from checkpoints_tools.hf_tensor_names import expected_shapes, saved_name
from checkpoints_tools.run_checkpoint import add_checkpoint_arguments, open_run_checkpoint
from checkpoints_tools.safetensors_files import ShardedSafetensorsWriter
from megatron_vl.command_line import human_bytes, parse_byte_size, run_command
from megatron_vl.files import partial_directory, publish_directory
from megatron_vl.models.hf_mapping import weight_rules
from megatron_vl.progress import track

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def check_shapes(reader: DistCheckpointReader, items: dict[str, Placement]) -> None:
    """Every key the model needs is in the checkpoint with the shape the run record's config implies."""
    for item in items.values():
        found = reader.shape(item.key)
        if found is None:
            raise ValueError(
                f"{reader.directory} has no tensor {item.key!r}; it is not a VLModel checkpoint of the config in its "
                "run record"
            )
        expected = list(item.global_shape(1))
        if item.vocab and len(found) == len(expected) and found[0] >= expected[0]:
            expected[0] = found[0]  # vocabulary rows padded for the saving TP size
        if list(found) != expected:
            raise ValueError(
                f"{reader.directory}: tensor {item.key!r} has shape {list(found)} but the run record's model config "
                f"implies {expected}; the run record does not describe this checkpoint"
            )


def read_group(reader: DistCheckpointReader, group: list[Placement]) -> list[torch.Tensor]:
    """The TP=1 tensors of ``group``, read from whatever chunks the saving layout wrote."""
    tensors = reader.read([(item.key, item.region()) for item in group])
    return [tensor[0] if item.layer is not None else tensor for item, tensor in zip(group, tensors)]


def export(
    ckpt: str | Path,
    out: str | Path,
    *,
    iteration: int | None = None,
    dtype: str | None = None,
    tokenizer: str | Path | None = None,
    max_shard_size: str = "5GB",
    progress: bool = True,
) -> dict:
    """Convert; returns a summary (tensors, bytes, seconds, shards, source iteration)."""
    start = time.perf_counter()
    run = open_run_checkpoint(ckpt, iteration, tokenizer)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; remove it or choose another --out")
    reader = DistCheckpointReader(run.directory)
    items = placements(run.config)
    check_shapes(reader, items)
    out_dtype = DTYPES[dtype] if dtype else reader.dtype(next(iter(items.values())).key)
    if out_dtype not in DTYPE_NAMES:
        raise ValueError(f"the checkpoint stores {out_dtype}; pass --dtype fp32 or bf16")

    rules = weight_rules(run.config)
    hf_shapes = expected_shapes(run.config)
    plan = [(saved_name(name), hf_shapes[name], out_dtype) for rule in rules for name in rule.hf]
    partial = partial_directory(out)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    writer = ShardedSafetensorsWriter(partial, plan, parse_byte_size(max_shard_size))
    for rule in track(rules, desc="tensor groups", unit="group", enabled=progress):
        tensors = read_group(reader, [items[name] for name in rule.megatron])
        for name, tensor in zip(rule.hf, rule.to_hf(*tensors)):
            writer.write(saved_name(name), tensor.to(out_dtype))
    writer.finish()
    side_files = write_hf_folder_files(partial, run.config, run.tokenizer, run.image_settings, DTYPE_NAMES[out_dtype])
    if out.exists():
        out.rmdir()
    publish_directory(partial, out)
    return {
        "iteration": run.iteration,
        "tensors": len(plan),
        "bytes": writer.bytes_written,
        "shards": len(writer.file_names),
        "files": side_files,
        "dtype": DTYPE_NAMES[out_dtype],
        "seconds": time.perf_counter() - start,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints_tools.to_hf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, help="new Hugging Face folder to write (must not exist or be empty)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="dtype of the exported weights (default: as stored)")
    parser.add_argument("--tokenizer", help="tokenizer to export instead of the one stored in the checkpoint")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default 5GB)")
    return parser


def run(args: argparse.Namespace) -> int:
    summary = export(
        args.ckpt, args.out, iteration=args.iteration, dtype=args.dtype, tokenizer=args.tokenizer,
        max_shard_size=args.max_shard_size,
    )
    print(
        f"exported iteration {summary['iteration']} to {args.out}: {summary['tensors']} tensors, "
        f"{human_bytes(summary['bytes'])} ({summary['dtype']}) in {summary['shards']} shard(s), "
        f"{summary['seconds']:.1f} s; also {', '.join(summary['files'])}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
