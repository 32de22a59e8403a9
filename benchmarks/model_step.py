"""Forward + backward time of ``VLModel`` against transformers' ``Qwen2_5_VLForConditionalGeneration`` on CPU.

Both models get the same weights (HF's, mapped with ``hf_mapping.from_hf``) and the same batch: one sequence
of text with images of different sizes. Prints the median step time of each, their ratio, and both losses
(equal up to float error, as a check that the two really do the same work).

    python -m benchmarks.model_step --help
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from megatron_vl.progress import track

IMAGE, VISION_START, VISION_END, VIDEO = 5, 3, 4, 6


def _config(args):
    from megatron_vl.config.model import tiny

    base = tiny(image_token_id=IMAGE, video_token_id=VIDEO, dtype=args.dtype)
    vision = dataclasses.replace(
        base.vision, num_layers=8, hidden_size=256, num_attention_heads=4, ffn_hidden_size=688, full_attention_layers=(3, 7)
    )
    language = dataclasses.replace(
        base.language, num_layers=8, hidden_size=512, num_attention_heads=8, num_query_groups=2, ffn_hidden_size=1408,
        mrope_section=(8, 12, 12),
    )
    projector = dataclasses.replace(base.projector, ffn_hidden_size=vision.merged_hidden_size)
    return dataclasses.replace(base, vision=vision, language=language, projector=projector)


def _batch(args, hf, generator):
    """Text runs around images of grids ``args.grids``, padded with text to ``args.tokens``."""
    ids = []
    grids = [tuple(int(x) for x in grid.split("x")) for grid in args.grids]
    for t, h, w in grids:
        ids += torch.randint(10, 4096, (16,), generator=generator).tolist()
        ids += [VISION_START] + [IMAGE] * (t * h * w // 4) + [VISION_END]
    if len(ids) > args.tokens:
        raise ValueError(f"the images alone need {len(ids)} tokens; raise --tokens")
    ids += torch.randint(10, 4096, (args.tokens - len(ids),), generator=generator).tolist()
    ids = torch.tensor([ids])
    grid = torch.tensor(grids)
    positions, _ = hf.model.get_rope_index(ids, mm_token_type_ids=(ids == IMAGE).int(), image_grid_thw=grid)
    pixel_values = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14, generator=generator)
    return ids, positions, pixel_values, grid


def _time_alternating(steps: dict, iterations: int) -> dict[str, tuple[list[float], float]]:
    """Run each step once to warm up, then ``iterations`` rounds of one step each, so that load changes on a
    shared machine hit both models alike. Returns each step's times and last loss."""
    results = {name: ([], step()) for name, step in steps.items()}
    for _ in track(range(iterations), desc="timed rounds", unit="round"):
        for name, step in steps.items():
            start = time.perf_counter()
            loss = step()
            results[name] = (results[name][0] + [time.perf_counter() - start], loss)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5, help="timed steps per model, after one warm-up step each")
    parser.add_argument("--tokens", type=int, default=1024, help="sequence length in tokens")
    parser.add_argument(
        "--grids", nargs="+", default=["1x28x40", "1x20x16", "1x12x22"],
        help="images as TxHxW patches (H, W even)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa", help="HF attention implementation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.models.hf_config import to_hf_config
    from megatron_vl.models.hf_mapping import from_hf
    from megatron_vl.models.sharding import load_full_state_dict
    from megatron_vl.runtime.distributed import init_single_process
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.runtime.platform import detect_platform

    platform = detect_platform()
    init_single_process(platform)
    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = _config(args)
    dtype = getattr(torch, args.dtype)
    hf_config = Qwen2_5_VLConfig(
        **to_hf_config(config, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END)
    )
    hf_config._attn_implementation = args.attention
    hf = Qwen2_5_VLForConditionalGeneration(hf_config).to(dtype).train()
    ours = VLModel(config, parallel=parallel, pg_collection=pgs, platform=platform).train()
    load_full_state_dict(ours, from_hf(hf.state_dict(), config))

    ids, positions, pixel_values, grid = _batch(args, hf, torch.Generator().manual_seed(0))
    labels = torch.roll(ids, -1, dims=1)
    pixel_values = pixel_values.to(dtype)

    def hf_step():
        hf.zero_grad(set_to_none=True)
        logits = hf(input_ids=ids, position_ids=positions, pixel_values=pixel_values, image_grid_thw=grid).logits
        loss = torch.nn.functional.cross_entropy(logits[0].float(), labels[0])
        loss.backward()
        return float(loss)

    def our_step():
        ours.zero_grad(set_to_none=True)
        loss = ours(ids, positions, pixel_values=pixel_values, image_grid_thw=grid, labels=labels).mean()
        loss.backward()
        return float(loss)

    results = _time_alternating({"transformers": hf_step, "VLModel": our_step}, args.iterations)
    (hf_times, hf_loss), (our_times, our_loss) = results["transformers"], results["VLModel"]
    hf_median, our_median = statistics.median(hf_times), statistics.median(our_times)

    patches = int(grid.prod(-1).sum())
    print(
        f"\nforward + backward on CPU, {args.threads} threads, {args.dtype}: {args.tokens} tokens, {len(grid)} images "
        f"({patches} patches), ViT {config.vision.num_layers}x{config.vision.hidden_size}, "
        f"LLM {config.language.num_layers}x{config.language.hidden_size}, HF attention {args.attention}"
    )
    print("| model        | median s | min s  | loss     |")
    print("|--------------|----------|--------|----------|")
    print(f"| transformers | {hf_median:8.3f} | {min(hf_times):6.3f} | {hf_loss:8.5f} |")
    print(f"| VLModel      | {our_median:8.3f} | {min(our_times):6.3f} | {our_loss:8.5f} |")
    print(f"VLModel / transformers time ratio: {our_median / hf_median:.2f}")


if __name__ == "__main__":
    main()
