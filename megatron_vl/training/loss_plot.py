"""Plot the loss curves of curriculum stages, one after another, to a PNG.

    python -m megatron_vl.training.loss_plot --log-root LOG_ROOT --out losses.png

Reads ``LOG_ROOT/<stage>/metrics.jsonl`` (what training writes) for each stage in curriculum order,
draws the training loss (and eval loss points) against the global step, with each stage's span
marked, and prints a table of each stage's first and last losses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megatron_vl.command_line import run_command
from megatron_vl.config.recipe import STAGES
from megatron_vl.training.metrics_file import read_metrics


def stage_curves(log_root: Path, stages=STAGES) -> list[dict]:
    """Per stage with metrics: its name, train (iteration, loss) and eval (iteration, loss) lists."""
    curves = []
    for stage in stages:
        train = [(record["iteration"], record["loss"]) for record in read_metrics(log_root / stage, "train")]
        if not train:
            continue
        evals = [(record["iteration"], record["loss"]) for record in read_metrics(log_root / stage, "eval")]
        curves.append({"stage": stage, "train": train, "eval": evals})
    if not curves:
        raise ValueError(
            f"no metrics.jsonl with training records under {log_root}/<stage>/ for any of {list(stages)}; "
            "pass the --log-root the training runs wrote to (MVL_LOG_ROOT)"
        )
    return curves


def plot(curves: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(10, 4.5), dpi=120)
    offset = 0
    for index, curve in enumerate(curves):
        color = f"C{index}"
        steps = [offset + iteration for iteration, _ in curve["train"]]
        axes.plot(steps, [loss for _, loss in curve["train"]], color=color, label=f"{curve['stage']} (train)")
        if curve["eval"]:
            axes.plot(
                [offset + iteration for iteration, _ in curve["eval"]],
                [loss for _, loss in curve["eval"]],
                "o", color=color, markersize=5, label=f"{curve['stage']} (eval)",
            )
        end = offset + curve["train"][-1][0]
        axes.axvspan(offset, end, color=color, alpha=0.06)
        offset = end
    axes.set_xlabel("step (stages one after another)")
    axes.set_ylabel("loss (mean over loss tokens)")
    axes.set_title("megatron-vl curriculum")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    pyplot.close(figure)


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
    print(f"{'stage':<20} {'steps':>6} {'first loss':>11} {'last loss':>10}")
    for curve in curves:
        first, last = curve["train"][0][1], curve["train"][-1][1]
        print(f"{curve['stage']:<20} {curve['train'][-1][0]:>6} {first:>11.4f} {last:>10.4f}")
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
