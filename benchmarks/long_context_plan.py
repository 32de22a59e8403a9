"""Which layout trains the 7B's long-context stage fastest within a GPU's memory: ``train --dry-run``'s plan over a
grid of layouts, as a table.

For every sequence length, the ``stage4_32k`` recipe at that length (global batch: ``--tokens-per-step`` / length,
2M tokens a step as the report's stages keep) on ``--world-size`` GPUs, at TP x CP x recompute of the grid
(PP=1: the bubble would only add to the step), through ``run_plan.plan_run``: the memory estimate of the worst
pipeline stage and the step time at the plan's assumed MFU. A layout fits when its estimate is below
``--headroom`` of ``--gpu-memory-gib`` (the estimate leaves out transient buffers). The fastest fitting layout
is marked; between equal estimates the one with fewer CP ranks wins (the estimate does not count CP's
key/value exchange), then the one needing less memory.

Arithmetic only (no GPU, seconds to run); the figures are estimates for comparing layouts, not measurements.

    python -m benchmarks.long_context_plan
    python -m benchmarks.long_context_plan --seq-lens 32768 131072 --world-size 256 --gpu-memory-gib 80
"""

from __future__ import annotations

import argparse
import dataclasses
import types

from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import load_recipe
from megatron_vl.config.training import RecomputeSettings
from megatron_vl.runtime.platform import Platform, peak_flops_of
from megatron_vl.training.run_config import RunPaths, resolve_run
from megatron_vl.training.run_plan import GIB, plan_run

TOKENIZER = types.SimpleNamespace(image_pad_id=151655, video_pad_id=151656, vocab_size=151680)
"""The MiMo-VL tokenizer's placeholders and vocabulary (what the plan reads of a tokenizer)."""
PATHS = RunPaths(data_root="/data", checkpoint_root="/checkpoints", log_root="/logs", tokenizer="/tokenizer")
RECOMPUTE = {
    "none": RecomputeSettings(),
    "block 12": RecomputeSettings(enabled=True, method="block", num_layers=12),
    "block 24": RecomputeSettings(enabled=True, method="block", num_layers=24),
    "full": RecomputeSettings(enabled=True, method="uniform", num_layers=1),
}
"""Activation recompute settings of the grid, by the name the table shows (block n: the first n of 36 layers)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayoutPlan:
    """One layout's plan figures."""

    seq_len: int
    tensor_parallel: int
    context_parallel: int
    recompute: str
    data_parallel: int
    micro_batches: int
    activations_gib: float
    total_gib: float
    step_seconds: float
    fits: bool
    tokens_per_gpu_second: float


def plan_layout(seq_len: int, tp: int, cp: int, recompute: str, args) -> LayoutPlan | str:
    """The plan of one layout, or why the layout cannot split the world, the batch or the model."""
    base = load_recipe("stage4_32k", "mimo_vl_7b")
    try:
        recipe = dataclasses.replace(
            base, seq_len=seq_len, global_batch_size=args.tokens_per_step // seq_len,
            parallel=ParallelConfig(tensor_parallel=tp, context_parallel=cp, sequence_parallel=tp > 1),
            recompute=RECOMPUTE[recompute],
        )
        gpu = Platform(device="cuda", device_name=args.gpu, layer_backend="transformer_engine",
                       peak_flops=peak_flops_of(args.gpu))
        plan = plan_run(resolve_run(recipe, PATHS, TOKENIZER, gpu), args.world_size)
    except ValueError as error:
        return str(error)
    memory = plan.worst_stage.memory
    return LayoutPlan(
        seq_len=seq_len, tensor_parallel=tp, context_parallel=cp, recompute=recompute,
        data_parallel=plan.data_parallel, micro_batches=plan.micro_batches_per_step,
        activations_gib=memory.activations / GIB, total_gib=memory.total / GIB,
        step_seconds=plan.step_time.seconds, fits=memory.total < args.headroom * args.gpu_memory_gib * GIB,
        tokens_per_gpu_second=recipe.tokens_per_iteration / plan.step_time.seconds / args.world_size,
    )


def plan_grid(seq_len: int, args) -> tuple[list[LayoutPlan], dict[tuple[int, int], str]]:
    """Every layout of the grid at ``seq_len`` (``args.tensor_parallel`` x ``args.context_parallel`` x
    ``RECOMPUTE``), and why each TP x CP pair the world, the batch or the model cannot take is refused."""
    plans, refused = [], {}
    for tp in args.tensor_parallel:
        for cp in args.context_parallel:
            planned = [plan_layout(seq_len, tp, cp, recompute, args) for recompute in RECOMPUTE]
            if isinstance(planned[0], str):
                refused[(tp, cp)] = planned[0]
            else:
                plans += planned
    return plans, refused


def fastest_fitting(plans: list[LayoutPlan]) -> LayoutPlan | None:
    """The fitting layout of least step time; equal times (to the millisecond): fewer CP ranks, then less memory."""
    fitting = [plan for plan in plans if plan.fits]
    return min(fitting, key=lambda plan: (round(plan.step_seconds, 3), plan.context_parallel, plan.total_gib),
               default=None)


def table(plans: list[LayoutPlan], best: dict[int, LayoutPlan | None]) -> str:
    lines = [
        "| tokens | TP | CP | recompute | DP | micro-batches | activations (GiB) | total (GiB) | est. step (s) "
        "| est. tokens/s/GPU | fits |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for plan in plans:
        mark = " **fastest**" if plan is best[plan.seq_len] else ""
        lines.append(
            f"| {plan.seq_len} | {plan.tensor_parallel} | {plan.context_parallel} | {plan.recompute} | "
            f"{plan.data_parallel} | {plan.micro_batches} | {plan.activations_gib:.1f} | {plan.total_gib:.1f} | "
            f"{plan.step_seconds:.3f} | {plan.tokens_per_gpu_second:,.0f} | {'yes' if plan.fits else 'no'}{mark} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072], help="packed sequence lengths")
    parser.add_argument("--world-size", type=int, default=256, help="GPUs (default: launch/stage4_32k.sh's 256)")
    parser.add_argument("--tokens-per-step", type=int, default=64 * 32768, help="tokens of a global batch")
    parser.add_argument("--tensor-parallel", type=int, nargs="+", default=[2, 4], help="TP sizes of the grid")
    parser.add_argument("--context-parallel", type=int, nargs="+", default=[1, 2, 4, 8], help="CP sizes of the grid")
    parser.add_argument("--gpu", default="NVIDIA H100", help="the GPU whose dense bf16 peak times the step")
    parser.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU")
    parser.add_argument("--headroom", type=float, default=0.8,
                        help="share of the GPU's memory the estimate may use (the rest: buffers it leaves out)")
    args = parser.parse_args(argv)
    if peak_flops_of(args.gpu) is None:
        parser.error(f"--gpu {args.gpu!r}: no known dense bf16 peak; name an H100, H200, H800, A100, A800 or B200")
    plans, refused, best = [], {}, {}
    for seq_len in args.seq_lens:
        at_length, refused[seq_len] = plan_grid(seq_len, args)
        plans += at_length
        best[seq_len] = fastest_fitting(at_length)
    print(f"stage4_32k's 7B on {args.world_size} x {args.gpu}, {args.tokens_per_step:,} tokens a step; fits: below "
          f"{args.headroom:.0%} of {args.gpu_memory_gib:g} GiB")
    print(table(plans, best))
    for seq_len, reasons in refused.items():
        for (tp, cp), reason in reasons.items():
            print(f"not a layout at {seq_len} tokens: TP={tp} CP={cp}: {reason}")


if __name__ == "__main__":
    main()
