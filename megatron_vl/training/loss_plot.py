"""Plot the loss curves of curriculum stages, one after another, to a PNG.

    python -m megatron_vl.training.loss_plot --log-root LOG_ROOT --out losses.png

Reads ``LOG_ROOT/<stage>/metrics.jsonl`` (what training writes) for each stage in curriculum order (the
text warm-up ``stage0_language`` first, where a run has one),
draws the training loss (and eval loss points) against the global step, with each stage's span
marked, and prints a table of each stage's first and last losses. Runs that scored benchmarks during
training (``benchmarks`` in the recipe) get a second panel, each score against the global step, and the
table gains each stage's last scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megatron_vl.command_line import run_command
from megatron_vl.config.recipe import STAGES, WARMUP_STAGE
from megatron_vl.training.metrics_file import read_metrics


def stage_curves(log_root: Path, stages=(WARMUP_STAGE, *STAGES)) -> list[dict]:
    """Per stage with metrics: its name, train (iteration, loss) and eval (iteration, loss) lists, and benchmark
    (iteration, {score name: score}) ones."""
    curves = []
    for stage in stages:
        train = [(record["iteration"], record["loss"]) for record in read_metrics(log_root / stage, "train")]
        if not train:
            continue
        evals = [(record["iteration"], record["loss"]) for record in read_metrics(log_root / stage, "eval")]
        benchmarks = [(record["iteration"], record["scores"]) for record in read_metrics(log_root / stage, "benchmark")]
        curves.append({"stage": stage, "train": train, "eval": evals, "benchmark": benchmarks})
    if not curves:
        raise ValueError(
            f"no metrics.jsonl with training records under {log_root}/<stage>/ for any of {list(stages)}; "
            "pass the --log-root the training runs wrote to (MVL_LOG_ROOT)"
        )
    return curves


def stage_offsets(curves: list[dict]) -> list[int]:
    """The global step each stage starts at: stages one after another, each as long as its last train record."""
    offsets, offset = [], 0
    for curve in curves:
        offsets.append(offset)
        offset += curve["train"][-1][0]
    return offsets


def score_names(curves: list[dict]) -> list[str]:
    """Every benchmark score of any stage, in the order first seen."""
    return list(dict.fromkeys(name for curve in curves for _, scores in curve["benchmark"] for name in scores))


def plot(curves: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = score_names(curves)
    if names:
        figure, (axes, score_axes) = pyplot.subplots(1, 2, figsize=(17, 4.5), dpi=120)
    else:
        figure, axes = pyplot.subplots(figsize=(10, 4.5), dpi=120)
    offsets = stage_offsets(curves)
    for index, (curve, offset) in enumerate(zip(curves, offsets)):
        color = f"C{index}"
        steps = [offset + iteration for iteration, _ in curve["train"]]
        axes.plot(steps, [loss for _, loss in curve["train"]], color=color, label=f"{curve['stage']} (train)")
        if curve["eval"]:
            axes.plot(
                [offset + iteration for iteration, _ in curve["eval"]],
                [loss for _, loss in curve["eval"]],
                "o", color=color, markersize=5, label=f"{curve['stage']} (eval)",
            )
        axes.axvspan(offset, offset + curve["train"][-1][0], color=color, alpha=0.06)
    axes.set_xlabel("step (stages one after another)")
    axes.set_ylabel("loss (mean over loss tokens)")
    axes.set_title("megatron-vl curriculum")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    if names:
        _plot_scores(score_axes, curves, offsets, names)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    pyplot.close(figure)


def _plot_scores(axes, curves: list[dict], offsets: list[int], names: list[str]) -> None:
    """Each score against the global step, one line across every stage that scored it."""
    for index, (curve, offset) in enumerate(zip(curves, offsets)):
        axes.axvspan(offset, offset + curve["train"][-1][0], color=f"C{index}", alpha=0.06)
    for index, name in enumerate(names):
        points = [(offset + iteration, scores[name]) for curve, offset in zip(curves, offsets)
                  for iteration, scores in curve["benchmark"] if name in scores]
        axes.plot([step for step, _ in points], [score for _, score in points], "o-", color=f"C{index}", markersize=4,
                  label=name)
    axes.set_xlabel("step (stages one after another)")
    axes.set_ylabel("score")
    axes.set_title("benchmark scores of the saved checkpoints")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)


def score_table(curves: list[dict]) -> str:
    """One line per stage: steps, first and last loss, and its last benchmark scores (with their iteration)."""
    header = f"{'stage':<20} {'steps':>6} {'first loss':>11} {'last loss':>10}"
    lines = [header + ("  last benchmark scores" if score_names(curves) else "")]
    for curve in curves:
        first, last = curve["train"][0][1], curve["train"][-1][1]
        scores = ""
        if curve["benchmark"]:
            iteration, values = curve["benchmark"][-1]
            scores = "  ".join(f"{name} {score:.4f}" for name, score in values.items()) + f" (iter {iteration})"
        lines.append(f"{curve['stage']:<20} {curve['train'][-1][0]:>6} {first:>11.4f} {last:>10.4f}  {scores}".rstrip())
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m megatron_vl.training.loss_plot", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-root", type=Path, required=True, help="MVL_LOG_ROOT of the runs (holds <stage>/metrics.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    return parser


def run(args: argparse.Namespace) -> int:
    curves = stage_curves(args.log_root)
    plot(curves, args.out)
    print(score_table(curves))
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
