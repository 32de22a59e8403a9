"""Training throughput of the 7B shape on one GPU: tokens/s, MFU and peak memory of a forward + backward.

The model is ``mimo_vl_7b`` with the whole ViT and projector and the LLM cut to ``--language-layers`` layers (the
full 36 do not fit one GPU's memory with their gradients), bf16, the layer backend of ``--layer-backend``
(Transformer Engine by default on a GPU). Up to 8K packed tokens a length runs without activation recompute, as
``stage3_multimodal`` trains; longer ones with full recompute, one layer per chunk: one GPU here holds a whole row,
which ``stage4_32k`` splits over TP=4 x CP=2 and so trains without recompute.
A micro-batch is one packed row of documents of ``--document-tokens`` tokens, each holding one image of
``--image-patches`` x ``--image-patches`` patches (a quarter as many image tokens) between two text runs.

Timed: forward, loss and backward (CUDA events, after warm-up steps). Not timed: the optimizer step and data
parallel communication, which a one-GPU step has none of. MFU counts the model FLOPs of ``training/flops.py``
(no recompute) against the GPU's dense bf16 peak.

    python -m benchmarks.gpu_throughput [--json results.json]
    python -m benchmarks.gpu_throughput --model tiny --seq-lens 256 512 --image-patches 8 --document-tokens 128
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import numpy as np
import torch

IMAGE, VISION_START, VISION_END, VIDEO = 5, 3, 4, 6
LONGEST_WITHOUT_RECOMPUTE = 8192
"""Packed lengths above this run with full recompute (one GPU, no TP or CP to divide the activations)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Measurement:
    """One sequence length's figures."""

    seq_len: int
    recompute: str
    step_seconds: float
    tokens_per_second: float
    model_tflops_per_second: float
    mfu: float | None
    peak_memory_gib: float
    loss: float


def _recompute(seq_len: int):
    from megatron_vl.config.training import RecomputeSettings

    if seq_len <= LONGEST_WITHOUT_RECOMPUTE:
        return RecomputeSettings()
    return RecomputeSettings(enabled=True, method="uniform", num_layers=1)


def _config(args):
    from megatron_vl.config.model import model_preset

    config = model_preset(args.model, image_token_id=IMAGE, video_token_id=VIDEO, dtype="bfloat16")
    language = dataclasses.replace(config.language, num_layers=args.language_layers)
    return dataclasses.replace(config, language=language)


def _micro_batch(config, seq_len: int, args, generator: torch.Generator, device) -> dict:
    """One packed row of documents with one square image each; the last document takes the remainder."""
    from megatron_vl.data.mrope import mrope_position_ids

    merge = config.vision.spatial_merge_size
    side = args.image_patches
    image_tokens = side * side // merge**2
    ids, positions, bounds, grids = [], [], [0], []
    while bounds[-1] < seq_len:
        length = min(args.document_tokens, seq_len - bounds[-1])
        text = length - image_tokens - 2
        if text >= 2:
            head = torch.randint(10, 4000, (text // 2,), generator=generator).tolist()
            tail = torch.randint(10, 4000, (text - text // 2,), generator=generator).tolist()
            tokens = head + [VISION_START] + [IMAGE] * image_tokens + [VISION_END] + tail
            document_grids = [(1, side, side)]
        else:
            tokens = torch.randint(10, 4000, (length,), generator=generator).tolist()
            document_grids = []
        ids += tokens
        positions.append(mrope_position_ids(
            np.array(tokens), np.array(document_grids, dtype=np.int64).reshape(-1, 3), image_pad_id=IMAGE,
            vision_start_id=VISION_START, spatial_merge_size=merge,
        ))
        grids += document_grids
        bounds.append(bounds[-1] + length)
    grid = torch.tensor(grids, dtype=torch.int64).reshape(-1, 3)
    input_ids = torch.tensor([ids])
    return {
        "input_ids": input_ids.to(device),
        "position_ids": torch.from_numpy(np.concatenate(positions, axis=1)).long()[:, None].to(device),
        "pixel_values": torch.randn(int(grid.prod(-1).sum()), config.vision.patch_dim, generator=generator).to(device),
        "image_grid_thw": grid.to(device),
        "cu_seqlens": torch.tensor(bounds, dtype=torch.int32).to(device),
        "labels": torch.roll(input_ids, -1, dims=1).to(device),
    }


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(model, config, batch: dict, *, steps: int, warmup: int, platform, recompute: str) -> Measurement:
    from megatron_vl.training.flops import training_flops

    device = platform.device

    def step() -> float:
        model.zero_grad(set_to_none=True)
        loss = model(**batch).sum()
        loss.backward()
        return float(loss.detach())

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], 0.0
    for _ in range(steps):
        _synchronize(device)
        start = time.perf_counter()
        loss = step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    tokens = batch["input_ids"].numel()
    frozen = {"vision": False, "projector": False, "language": False}
    flops = training_flops(config, frozen, batch["cu_seqlens"].cpu(), batch["image_grid_thw"].cpu())
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return Measurement(
        seq_len=tokens, recompute=recompute, step_seconds=seconds, tokens_per_second=tokens / seconds,
        model_tflops_per_second=flops / seconds / 1e12,
        mfu=flops / seconds / platform.peak_flops if platform.peak_flops else None,
        peak_memory_gib=peak_memory, loss=loss / tokens,
    )


def run(args, on_progress=None) -> dict:
    """Measure every ``args.seq_lens``; ``on_progress(report)`` after each, so a run stopped part-way keeps the
    lengths it finished. A length that does not fit the GPU's memory is reported as such, not raised."""
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.runtime.distributed import init_single_process
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import detect_platform
    from megatron_vl.training.parallelize import apply_recompute

    platform = detect_platform(args.layer_backend)
    init_single_process(platform)
    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = _config(args)
    generator = torch.Generator().manual_seed(0)
    report = {
        "device": platform.device_name,
        "layer_backend": platform.layer_backend,
        "model": f"{args.model} with {args.language_layers} LLM layers, full ViT, bf16",
        "parameters": None,
        "requested_seq_lens": list(args.seq_lens),
        "measurements": [],
        "out_of_memory": [],
    }
    for seq_len in args.seq_lens:
        recompute = _recompute(seq_len)
        described = f"full, {recompute.method}, {recompute.num_layers}" if recompute.enabled else "none"
        model = batch = None
        try:
            model = VLModel(config, parallel=parallel, pg_collection=pgs, platform=platform)
            report["parameters"] = sum(param.numel() for param in model.parameters())
            apply_recompute(model, recompute)
            batch = _micro_batch(config, seq_len, args, generator, platform.device)
            measurement = measure(model, config, batch, steps=args.steps, warmup=args.warmup, platform=platform,
                                  recompute=described)
            report["measurements"].append(dataclasses.asdict(measurement))
        except torch.OutOfMemoryError as error:
            report["out_of_memory"].append({"seq_len": seq_len, "recompute": described, "error": str(error).split("\n")[0]})
        del model, batch
        if platform.on_gpu:
            torch.cuda.empty_cache()
        if on_progress is not None:
            on_progress(report)
    return report


def table(report: dict) -> str:
    """The results as a Markdown table."""
    parameters = f"{report['parameters'] / 1e6:,.0f}M parameters" if report["parameters"] else "not built"
    lines = [
        f"{report['model']}, {parameters}, on {report['device']} ({report['layer_backend']} layers)",
        "",
        "| packed tokens | recompute | step (s) | tokens/s/GPU | model TFLOP/s | MFU | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in report["measurements"]:
        mfu = f"{m['mfu']:.1%}" if m["mfu"] is not None else "n/a"
        lines.append(
            f"| {m['seq_len']} | {m['recompute']} | {m['step_seconds']:.3f} | {m['tokens_per_second']:,.0f} | "
            f"{m['model_tflops_per_second']:.1f} | {mfu} | {m['peak_memory_gib']:.1f} |"
        )
    for m in report.get("out_of_memory", []):
        lines.append(f"| {m['seq_len']} | {m['recompute']} | out of memory | | | | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mimo_vl_7b", choices=["mimo_vl_7b", "tiny"], help="model preset")
    parser.add_argument("--language-layers", type=int, default=4, help="LLM layers kept (default 4)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[8192, 32768], help="packed tokens per micro-batch")
    parser.add_argument("--document-tokens", type=int, default=4096, help="tokens per document (default 4096)")
    parser.add_argument("--image-patches", type=int, default=64,
                        help="image side in patches (default 64: 4096 patches, 1024 image tokens)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per length (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--layer-backend", default=None, help="auto | transformer_engine | local (default: $MVL_LAYER_BACKEND, else auto)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    def write(report: dict) -> None:
        if args.json:
            with open(args.json, "w") as file:
                json.dump(report, file, indent=2)

    print(table(run(args, on_progress=write)))


if __name__ == "__main__":
    main()
