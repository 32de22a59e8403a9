"""Reading a benchmark file of any supported format, with the metric it is scored by given or inferred.

Inference (``metric=None``): a ``.tsv`` with option columns ``A``, ``B``, ... is ``multiple_choice``; else one
whose file name contains ``docvqa`` or ``infovqa`` is ``anls``, ``chartqa`` is ``relaxed_accuracy``, anything
else ``exact_match``. A ``.jsonl`` whose first record has ``boxes`` is ``grounding``, ``captions`` is ``cider``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from checkpoints_tools.benchmark_scoring.benchmark_rows import (
    ANLS, EXACT_MATCH, JSONL_METRICS, METRICS, MULTIPLE_CHOICE, RELAXED_ACCURACY, TSV_METRICS, Benchmark,
)
from checkpoints_tools.benchmark_scoring.jsonl_benchmarks import jsonl_metric, read_jsonl_benchmark
from checkpoints_tools.benchmark_scoring.tsv_benchmarks import option_columns, read_tsv_benchmark, read_tsv_header

_VQA_BY_NAME = (("docvqa", ANLS), ("infovqa", ANLS), ("chartqa", RELAXED_ACCURACY))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptSettings:
    """The text that asks the model, for the benchmarks whose files hold no complete prompt."""

    vqa_suffix: str = "\nAnswer the question using a single word or phrase."
    """Appended to an open VQA question (multiple-choice prompts are VLMEvalKit's, without it)."""
    grounding_prompt: str = 'Locate "{query}" in the image and output its bbox_2d coordinates in JSON format.'
    """A grounding record's prompt, ``{query}`` replaced by its query."""
    caption_prompt: str = "Describe the image in one sentence."
    """The prompt of every caption record (may be empty without ``chat``: the model continues after the image)."""
    chat: bool = True
    """Wrap each row in the folder's chat template (instruction-tuned models); False: the row's images, then its
    prompt, as a pre-training document reads (base models, e.g. a curriculum stage's checkpoint)."""

    def __post_init__(self) -> None:
        if "{query}" not in self.grounding_prompt:
            raise ValueError(f"the grounding prompt {self.grounding_prompt!r} has no {{query}} for the record's query")
        if self.chat and not self.caption_prompt.strip():
            raise ValueError("the caption prompt is empty; give the text that asks for a caption (an empty one only "
                             "makes sense without the chat template: --no-chat)")


def infer_metric(path: Path) -> str:
    if path.suffix == ".jsonl":
        return jsonl_metric(path)
    if len(option_columns(read_tsv_header(path))) >= 2:
        return MULTIPLE_CHOICE
    name = path.name.lower()
    return next((metric for key, metric in _VQA_BY_NAME if key in name), EXACT_MATCH)


def read_benchmark(
    path: str | Path, metric: str | None = None, *, limit: int | None = None, prompts: PromptSettings = PromptSettings()
) -> Benchmark:
    """The rows of ``path`` (the first ``limit``) and the metric that scores them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"benchmark file {path} does not exist")
    if path.suffix not in (".tsv", ".jsonl"):
        raise ValueError(f"{path}: benchmark files are .tsv (VLMEvalKit) or .jsonl (grounding, captions)")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    metric = metric or infer_metric(path)
    allowed = TSV_METRICS if path.suffix == ".tsv" else JSONL_METRICS
    if metric not in allowed:
        problem = f"metric {metric!r} does not apply to a {path.suffix} file" if metric in METRICS else None
        raise ValueError(f"{path}: {problem or f'unknown metric {metric!r}'}; choose one of {list(allowed)}")
    if path.suffix == ".tsv":
        rows = read_tsv_benchmark(path, metric, limit=limit, vqa_suffix=prompts.vqa_suffix)
    else:
        rows = read_jsonl_benchmark(
            path, metric, limit=limit, grounding_prompt=prompts.grounding_prompt, caption_prompt=prompts.caption_prompt
        )
    if not rows:
        raise ValueError(f"{path} has no rows")
    return Benchmark(path, metric, rows)
