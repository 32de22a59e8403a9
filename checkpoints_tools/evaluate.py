"""Benchmark scores of an exported Hugging Face folder (or of a checkpoint, exported first).

    python -m checkpoints_tools.evaluate --hf HF_DIR MMBench_DEV_EN.tsv DocVQA_VAL.tsv --out results.json
    python -m checkpoints_tools.evaluate --ckpt runs/stage3/checkpoints refcoco.jsonl coco.jsonl --limit 200
    python -m checkpoints_tools.evaluate --hf HF_DIR my_vqa.tsv --metric relaxed_accuracy --batch-size 16

Files are VLMEvalKit TSVs (multiple choice, open VQA) and grounding / caption JSONL; each is scored by its
``--metric`` (one for all files, or one per file in order, ``auto`` to infer that one) or the metric its format
implies. Rows are answered by greedy generation (transformers, batched with left padding; or ``--engine vllm``),
with the folder's processor and chat template as its users build inputs. Prints a table per file and category;
``--out`` writes the scores, the per-category scores and every row's prediction as JSON. ``--chance`` scores no
model: each row is answered with the next row's reference answer, the chance level to read scores against.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from checkpoints_tools.benchmark_scoring.benchmark_files import PromptSettings, read_benchmark
from checkpoints_tools.benchmark_scoring.benchmark_rows import (
    ANLS, CIDER, EXACT_MATCH, GROUNDING, METRICS, MULTIPLE_CHOICE, RELAXED_ACCURACY,
)
from megatron_vl.command_line import run_command

ENGINES = ("transformers", "vllm")
DEFAULT_MAX_NEW_TOKENS = {
    MULTIPLE_CHOICE: 32, ANLS: 64, RELAXED_ACCURACY: 64, EXACT_MATCH: 64, GROUNDING: 128, CIDER: 64,
}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _make_generator(hf_dir: Path, engine: str, device: str, dtype: str, max_images_per_row: int):
    if engine == "vllm":
        from checkpoints_tools.benchmark_scoring.vllm_generation import VLLMGenerator

        return VLLMGenerator(hf_dir, dtype=dtype, max_images_per_row=max_images_per_row)
    from checkpoints_tools.batched_generation import BatchedGenerator

    return BatchedGenerator(hf_dir, device=device, dtype=dtype)


def evaluate_folder(
    hf_dir: str | Path,
    benchmark_files: list[str | Path],
    *,
    metrics: list[str | None] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    workers: int = 2,
    device: str | None = None,
    dtype: str = "fp32",
    engine: str = "transformers",
    max_new_tokens: int | None = None,
    prompts: PromptSettings = PromptSettings(),
    progress: bool = True,
) -> dict:
    """Score an exported folder on ``benchmark_files``; returns ``{"model", "engine", "device", "files": [...]}``
    with one ``score_report.file_result`` per file, in order.

    ``metrics`` has one entry per file (None: inferred); ``limit`` takes the first rows of each file;
    ``max_new_tokens`` (default: per metric, ``DEFAULT_MAX_NEW_TOKENS``) bounds each answer. Every file is read
    and checked before the model loads, so a malformed file fails fast.
    """
    from checkpoints_tools.benchmark_scoring.answering import answer_benchmark
    from checkpoints_tools.benchmark_scoring.row_scoring import score_rows
    from checkpoints_tools.benchmark_scoring.score_report import file_result

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    if not benchmark_files:
        raise ValueError("no benchmark files to score; pass at least one .tsv or .jsonl file")
    metrics = list(metrics) if metrics is not None else [None] * len(benchmark_files)
    if len(metrics) != len(benchmark_files):
        raise ValueError(
            f"{len(metrics)} metrics for {len(benchmark_files)} files; give one per file, or none to infer them"
        )
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    benchmarks = [
        read_benchmark(path, metric, limit=limit, prompts=prompts) for path, metric in zip(benchmark_files, metrics)
    ]
    device = device or _default_device()
    max_images = max(len(row.images) for benchmark in benchmarks for row in benchmark.rows)
    generator = _make_generator(Path(hf_dir), engine, device, dtype, max_images)
    results = []
    for benchmark in benchmarks:
        predictions, sizes = answer_benchmark(
            generator, benchmark, batch_size=batch_size, workers=workers,
            max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS[benchmark.metric], chat=prompts.chat,
            progress=progress,
        )
        row_scores = score_rows(benchmark, predictions, sizes, generator.image_settings)
        results.append(file_result(benchmark, predictions, row_scores))
    return {"model": str(hf_dir), "engine": engine, "device": device, "files": results}


def chance_levels(
    benchmark_files: list[str | Path], *, metrics: list[str | None] | None = None, limit: int | None = None
) -> dict:
    """The chance level of each file (``benchmark_scoring.chance``), as ``evaluate_folder`` reports scores; boxes
    are placed through the default image settings."""
    from checkpoints_tools.benchmark_scoring.chance import chance_answers, image_sizes
    from checkpoints_tools.benchmark_scoring.row_scoring import score_rows
    from checkpoints_tools.benchmark_scoring.score_report import file_result
    from megatron_vl.data.images import ImageSettings

    metrics = list(metrics) if metrics is not None else [None] * len(benchmark_files)
    results = []
    for path, metric in zip(benchmark_files, metrics):
        benchmark = read_benchmark(path, metric, limit=limit, prompts=PromptSettings())
        sizes = image_sizes(benchmark)
        answers = chance_answers(benchmark, sizes, ImageSettings())
        results.append(file_result(benchmark, answers, score_rows(benchmark, answers, sizes, ImageSettings())))
    return {"model": "chance: each row answered with the next row's reference", "engine": None, "device": None,
            "files": results}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints_tools.evaluate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--hf", type=Path, help="an exported Hugging Face folder (to_hf output)")
    model.add_argument("--ckpt", help="a checkpoint root or iter_* directory, exported to a temporary folder first")
    model.add_argument(
        "--chance", action="store_true",
        help="no model: score the chance level (each row answered with the next row's reference answer)",
    )
    parser.add_argument("--iteration", type=int, help="with --ckpt: the iteration to score (default: the latest)")
    parser.add_argument("files", nargs="+", type=Path, help="benchmark files: VLMEvalKit .tsv, grounding or caption .jsonl")
    parser.add_argument(
        "--metric", action="append", choices=("auto", *METRICS),
        help="metric of the files: once for all, or once per file in order (auto: inferred; default: all inferred)",
    )
    parser.add_argument("--limit", type=int, help="score only the first N rows of each file")
    parser.add_argument("--batch-size", type=int, default=8, help="rows generated together (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding images ahead of generation (default 2)")
    parser.add_argument("--device", help="torch device of the model (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="dtype of the model (default fp32)")
    parser.add_argument("--engine", choices=ENGINES, default="transformers", help="generation engine (vllm: untested)")
    parser.add_argument(
        "--max-new-tokens", type=int, help="tokens per answer (default: 32 multiple choice, 128 grounding, else 64)"
    )
    defaults = PromptSettings()
    parser.add_argument(
        "--vqa-suffix", default=defaults.vqa_suffix, help=f"appended to open VQA questions (default {defaults.vqa_suffix!r})"
    )
    parser.add_argument(
        "--grounding-prompt", default=defaults.grounding_prompt, help="grounding prompt template with {query}"
    )
    parser.add_argument("--caption-prompt", default=defaults.caption_prompt, help="prompt of caption records")
    parser.add_argument(
        "--no-chat", action="store_true",
        help="no chat template: each row's images, then its prompt, as a pre-training document reads (base models)",
    )
    parser.add_argument("--out", type=Path, help="write the results (scores, categories, every prediction) here as JSON")
    return parser


def _metrics(args: argparse.Namespace) -> list[str | None]:
    given = args.metric or ["auto"]
    if len(given) == 1:
        given = given * len(args.files)
    if len(given) != len(args.files):
        raise ValueError(f"{len(given)} --metric for {len(args.files)} files; give one for all or one per file")
    return [None if metric == "auto" else metric for metric in given]


def run(args: argparse.Namespace) -> int:
    from checkpoints_tools.benchmark_scoring.score_report import score_table

    if args.iteration is not None and args.ckpt is None:
        raise ValueError("--iteration picks an iteration of --ckpt; with --hf it has no meaning")
    options = dict(
        metrics=_metrics(args), limit=args.limit, batch_size=args.batch_size, workers=args.workers, device=args.device,
        dtype=args.dtype, engine=args.engine, max_new_tokens=args.max_new_tokens,
        prompts=PromptSettings(
            vqa_suffix=args.vqa_suffix, grounding_prompt=args.grounding_prompt, caption_prompt=args.caption_prompt,
            chat=not args.no_chat,
        ),
    )
    if args.chance:
        results = chance_levels(args.files, metrics=options["metrics"], limit=args.limit)
    elif args.hf is not None:
        results = evaluate_folder(args.hf, args.files, **options)
    else:
        from checkpoints_tools.to_hf import export

        with tempfile.TemporaryDirectory(prefix="mvl-evaluate-") as temporary:
            hf_dir = Path(temporary) / "hf"
            summary = export(args.ckpt, hf_dir, iteration=args.iteration)
            print(f"exported iteration {summary['iteration']} of {args.ckpt} to a temporary folder")
            results = evaluate_folder(hf_dir, args.files, **options)
            results["model"] = f"{args.ckpt} (iteration {summary['iteration']})"
    print(score_table(results["files"]))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"results written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
