"""Checkpoint conversion at scale: peak memory and time against a plain copy of the same bytes.

    python -m benchmarks.convert [--llm-layers 4] [--dtype bf16] [--tp 2 --pp 2] [--work-dir /tmp/convert-bench]

Writes a random Hugging Face checkpoint of the MiMo-VL-7B shape with ``--llm-layers`` LLM layers (4: 2.6B
parameters; 36: the full 8.3B), streaming, then times in fresh processes: ``from_hf`` (HF -> dist checkpoint
at TP x PP), ``to_hf`` (back), a copy of the source files (the same bytes, read and written once), and a
process that only imports the converters. Each row gives the process's peak resident memory and its time as
a ratio to the copy (the page cache is warmed first, so every row reads its input from memory alike). With 4 LLM layers the
largest tensors (embedding and output layer, 151680 x 4096) and every layer shape are those of the full 7B,
so the peak memory is what the full model needs too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

import torch

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _tokenizer():
    from megatron_vl.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(["a red circle on a white background, 47 + 38 = 85"] * 20, 300)


def write_random_checkpoint(directory: Path, llm_layers: int, dtype: torch.dtype) -> tuple[int, int]:
    """A random HF Qwen2.5-VL folder written tensor by tensor; returns (parameters, bytes)."""
    from checkpoints_tools.hf_folder_files import write_hf_folder_files
    from checkpoints_tools.hf_tensor_names import expected_shapes, saved_name
    from checkpoints_tools.safetensors_files import ShardedSafetensorsWriter
    from megatron_vl.config.model import mimo_vl_7b
    from megatron_vl.data.images import ImageSettings

    tokenizer = _tokenizer()
    config = mimo_vl_7b(image_token_id=tokenizer.image_pad_id, video_token_id=tokenizer.video_pad_id)
    config = dataclasses.replace(config, language=dataclasses.replace(config.language, num_layers=llm_layers))
    shapes = expected_shapes(config)
    directory.mkdir(parents=True)
    writer = ShardedSafetensorsWriter(directory, [(saved_name(n), s, dtype) for n, s in shapes.items()], 5 * 10**9)
    generator = torch.Generator().manual_seed(0)
    for name, shape in shapes.items():
        writer.write(saved_name(name), (torch.randn(shape, generator=generator, dtype=dtype) * 0.02))
    writer.finish()
    write_hf_folder_files(directory, config, tokenizer, ImageSettings(), "bfloat16" if dtype == torch.bfloat16 else "float32")
    return sum(torch.Size(shape).numel() for shape in shapes.values()), writer.bytes_written


def _measure(task: str, arguments: dict, results: mp.Queue) -> None:
    start = time.perf_counter()
    if task == "from_hf":
        from checkpoints_tools.from_hf import ImportRequest, import_checkpoint

        import_checkpoint(ImportRequest(**arguments), progress=False)
    elif task == "to_hf":
        from checkpoints_tools.to_hf import export

        export(**arguments, progress=False)
    elif task == "idle":
        import checkpoints_tools.from_hf  # noqa: F401  (what a converter process holds before any tensor)
        import checkpoints_tools.to_hf  # noqa: F401
    else:
        Path(arguments["target"]).mkdir()
        for source in sorted(Path(arguments["source"]).iterdir()):
            shutil.copyfile(source, Path(arguments["target"]) / source.name)
    seconds = time.perf_counter() - start
    results.put({"seconds": seconds, "peak_rss": _peak_rss()})


def _peak_rss() -> int:
    """This program's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over from the process
    that started this one (the benchmark's parent, which held a large random tensor)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(task: str, **arguments) -> dict:
    """Run one step in a fresh process: its wall time and peak resident memory."""
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_measure, args=(task, arguments, results))
    process.start()
    result = results.get()
    process.join()
    return result


def _folder_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-layers", type=int, default=4, help="LLM layers of the 7B shape (36: the full model)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--pp", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/convert-bench"))
    args = parser.parse_args()
    if args.llm_layers % args.pp:
        sys.exit(f"--llm-layers {args.llm_layers} must be divisible by --pp {args.pp}")
    shutil.rmtree(args.work_dir, ignore_errors=True)
    source = args.work_dir / "hf"
    started = time.perf_counter()
    parameters, nbytes = write_random_checkpoint(source, args.llm_layers, DTYPES[args.dtype])
    print(f"random checkpoint: {parameters / 1e9:.2f}B parameters, {nbytes / 2**30:.2f} GiB ({args.dtype}), "
          f"written in {time.perf_counter() - started:.0f} s")

    # The first copy only warms the page cache, so that every timed row reads the source from memory alike.
    measure("copy", source=str(source), target=str(args.work_dir / "warm"))
    shutil.rmtree(args.work_dir / "warm")
    copy = measure("copy", source=str(source), target=str(args.work_dir / "copy"))
    shutil.rmtree(args.work_dir / "copy")
    imported = measure("from_hf", out=args.work_dir / "dist", hf=source, tensor_parallel=args.tp, pipeline_parallel=args.pp)
    # Copied again after the conversion, and the two copies averaged: the machine's load drifts.
    again = measure("copy", source=str(source), target=str(args.work_dir / "copy"))
    shutil.rmtree(args.work_dir / "copy")
    copy = {"seconds": (copy["seconds"] + again["seconds"]) / 2, "peak_rss": max(copy["peak_rss"], again["peak_rss"])}
    rows = [("idle (imports only)", 0, measure("idle")), ("cp of the HF files (mean of 2)", nbytes, copy)]
    rows.append((f"from_hf (TP={args.tp}, PP={args.pp})", _folder_bytes(args.work_dir / "dist"), imported))
    shutil.rmtree(source)
    exported = measure("to_hf", ckpt=args.work_dir / "dist", out=args.work_dir / "back")
    rows.append(("to_hf", _folder_bytes(args.work_dir / "back"), exported))

    print(f"\n{'step':<31} {'GiB':>7} {'seconds':>8} {'GiB/s':>6} {'peak RSS GiB':>13} {'time / cp':>10}")
    for name, size, result in rows:
        print(f"{name:<31} {size / 2**30:>7.2f} {result['seconds']:>8.1f} {size / 2**30 / result['seconds']:>6.2f} "
              f"{result['peak_rss'] / 2**30:>13.2f} {result['seconds'] / copy['seconds']:>10.2f}")
    print(json.dumps({name: result for name, _, result in rows}))
    shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
