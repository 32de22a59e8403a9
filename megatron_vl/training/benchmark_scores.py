"""Benchmark scores of the checkpoints a stage saves, every ``benchmarks.every`` iterations and at its end.

Rank 0 exports the checkpoint just saved (``checkpoints_tools.to_hf``) to a temporary folder (under ``$TMPDIR``),
scores it there with ``checkpoints_tools.evaluate.evaluate_folder`` and deletes the folder; the other ranks wait.
Every rank then hands the same scores to ``Trainer.log_metrics("benchmark", ...)``, so the metrics log writes them
to ``metrics.jsonl`` and TensorBoard. Each scoring's full results (every row's prediction, per-category scores) go
to ``LOG_DIR/benchmarks/iter_<N>.json`` as ``evaluate --out`` writes them. The other ranks wait on a gloo group of
their own with a long timeout (``SCORING_TIMEOUT``), not on the training collectives, whose timeout (30 minutes) a
large export and its generation could outlast. A failure on rank 0 is raised on every rank, so no rank waits
forever. Generation runs under a forked RNG: training's random state, which checkpoints save, is left as it was.
"""

from __future__ import annotations

import datetime
import gc
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from megatron_vl.config.training import BenchmarkSettings
from megatron_vl.training.checkpointing import Checkpointer
from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)

SCORING_TIMEOUT = datetime.timedelta(hours=6)
"""How long the other ranks wait for rank 0 to export and score one checkpoint."""
BENCHMARK_EVENT = "benchmark"
BENCHMARK_RESULTS_DIR = "benchmarks"
"""Under the stage's log folder: ``iter_<N>.json``, the full results of each scoring."""
METRIC_LABELS = {"grounding": "iou@0.5"}
"""How a score is called where the metric's own name says too little (grounding: the share of boxes at IoU >= 0.5)."""


def scoring_group() -> dist.ProcessGroup:
    """The group every rank waits on while rank 0 scores (a collective: every rank calls it, in the same order)."""
    return dist.new_group(backend="gloo", timeout=SCORING_TIMEOUT)


def _on_rank0(work: Callable[[], object], group: dist.ProcessGroup):
    """``work()`` on rank 0, its result on every rank of ``group``; rank 0's exception is raised on every rank."""
    outcome = None
    failure = None
    if dist.get_rank() == 0:
        try:
            outcome = ("done", work())
        except Exception as error:
            failure = error
            outcome = ("failed", f"{type(error).__name__}: {error}")
    box = [outcome]
    dist.broadcast_object_list(box, src=0, group=group)
    status, payload = box[0]
    if failure is not None:
        raise failure
    if status == "failed":
        raise RuntimeError(f"rank 0 failed while scoring the benchmarks: {payload}")
    return payload


def check_benchmark_files(settings: BenchmarkSettings, files: tuple[str, ...], group: dist.ProcessGroup) -> None:
    """Read every benchmark file on rank 0 at the start of the stage (a collective), so a missing or malformed file
    fails now rather than at the first evaluation."""

    def check() -> None:
        from checkpoints_tools.benchmark_scoring.benchmark_files import read_benchmark

        metrics = settings.metrics or (None,) * len(files)
        for given, path, metric in zip(settings.files, files, metrics):
            if not Path(path).is_file():
                raise ValueError(
                    f"benchmark file {given} ({path}) does not exist; benchmarks.files are absolute paths or relative "
                    "to the data root: fix the path, or turn the benchmarks off with --set benchmarks.every=null"
                )
            read_benchmark(path, metric, limit=settings.limit)

    _on_rank0(check, group)


def benchmark_values(results: dict, seconds: float) -> dict:
    """The ``benchmark`` metrics of ``evaluate_folder``'s results: ``{"scores": {"<file>/<metric>": score, ...},
    "rows": {"<file>": rows, ...}, "seconds": ...}`` (grounding adds ``<file>/mean_iou``)."""
    scores, rows = {}, {}
    for result in results["files"]:
        name = Path(result["path"]).stem
        scores[f"{name}/{METRIC_LABELS.get(result['metric'], result['metric'])}"] = result["score"]
        if "mean_iou" in result:
            scores[f"{name}/mean_iou"] = result["mean_iou"]
        rows[name] = result["rows"]
    return {"scores": scores, "rows": rows, "seconds": seconds}


class BenchmarkScores(Hook):
    """After the checkpoint hook (500): scores the checkpoint it just saved. A run stopped by a signal skips its
    scores (it is on notice to exit)."""

    priority = 600

    def __init__(
        self, checkpointer: Checkpointer, settings: BenchmarkSettings, files: tuple[str, ...], *,
        group: dist.ProcessGroup, results_dir: str, on_gpu: bool, bf16: bool,
    ) -> None:
        """``files``: ``settings.files`` resolved (``RunConfig.benchmark_files``); ``group``: ``scoring_group()``;
        ``results_dir``: where each scoring's full results go; ``on_gpu``: score on this rank's GPU, else the CPU;
        ``bf16``: export and generate in bf16, else fp32."""
        assert settings.every is not None
        self.checkpointer = checkpointer
        self.settings = settings
        self.files = files
        self.group = group
        self.results_dir = Path(results_dir)
        self.device = f"cuda:{torch.cuda.current_device()}" if on_gpu else "cpu"
        self.dtype = "bf16" if bf16 else "fp32"

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if trainer.stop_reason is not None and not trainer.done:
            return
        if result.iteration % self.settings.every and not trainer.done:
            return
        self.checkpointer.wait()
        values = _on_rank0(lambda: self.score(result.iteration), self.group)
        trainer.log_metrics(BENCHMARK_EVENT, result.iteration, values)

    def score(self, iteration: int) -> dict:
        """Export the published checkpoint of ``iteration`` and score it (rank 0)."""
        from checkpoints_tools.benchmark_scoring.benchmark_files import PromptSettings
        from checkpoints_tools.evaluate import evaluate_folder
        from checkpoints_tools.to_hf import export

        directory = self.checkpointer.published(iteration)
        assert directory is not None, f"the checkpoint of iteration {iteration} was not saved before scoring it"
        start = time.perf_counter()
        logger.info("scoring benchmarks on the checkpoint of iteration %d", iteration)
        devices = [torch.device(self.device)] if self.device != "cpu" else []
        with tempfile.TemporaryDirectory(prefix="mvl-benchmark-") as temporary, torch.random.fork_rng(devices=devices):
            hf_dir = Path(temporary) / "hf"
            export(directory, hf_dir, dtype=self.dtype, progress=False)
            settings = self.settings
            prompts = {name: value for name in ("caption_prompt", "grounding_prompt")
                       if (value := getattr(settings, name)) is not None}
            results = evaluate_folder(
                hf_dir, list(self.files), metrics=list(settings.metrics) or None, limit=settings.limit,
                batch_size=settings.batch_size, device=self.device, dtype=self.dtype,
                max_new_tokens=settings.max_new_tokens, prompts=PromptSettings(chat=settings.chat, **prompts),
                progress=False,
            )
        results["model"] = f"{directory} (iteration {iteration})"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        (self.results_dir / f"{Path(directory).name}.json").write_text(json.dumps(results, indent=1) + "\n")
        # The generator held a copy of the model: give its memory back to training.
        gc.collect()
        if self.device != "cpu":
            torch.cuda.empty_cache()
        return benchmark_values(results, time.perf_counter() - start)
