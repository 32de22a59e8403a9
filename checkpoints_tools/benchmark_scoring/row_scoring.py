"""Each row's score under its benchmark's metric, computed from the model's answer.

The answer scored is the generated text after the last ``</think>`` (a reasoning model's answer without its
reasoning), stripped. Scores are in [0, 1] except CIDEr-D (0 to 10); a file's score is the mean of its rows'.
"""

from __future__ import annotations

from checkpoints_tools.benchmark_scoring.benchmark_rows import (
    ANLS, CIDER, EXACT_MATCH, GROUNDING, MULTIPLE_CHOICE, RELAXED_ACCURACY, Benchmark, BenchmarkRow,
)
from checkpoints_tools.benchmark_scoring.cider import cider_d
from checkpoints_tools.benchmark_scoring.grounding_answers import parse_boxes, resized_size, to_original
from checkpoints_tools.benchmark_scoring.metrics import anls, box_iou, exact_match, relaxed_accuracy
from checkpoints_tools.benchmark_scoring.option_extraction import extract_option
from megatron_vl.data.images import ImageSettings

IOU_THRESHOLD = 0.5
_VQA_METRICS = {ANLS: anls, RELAXED_ACCURACY: relaxed_accuracy, EXACT_MATCH: exact_match}


def scored_answer(prediction: str) -> str:
    return prediction.split("</think>")[-1].strip()


def _grounding(row: BenchmarkRow, answer: str, image_size: tuple[int, int], settings: ImageSettings) -> dict:
    """A hit when the first predicted box, mapped to original pixels, has IoU >= 0.5 with any ground-truth box."""
    boxes = parse_boxes(answer)
    if not boxes:
        return {"score": 0.0, "iou": 0.0, "box": None}
    box = to_original(boxes[0], image_size, resized_size(*image_size, settings))
    iou = max(box_iou(box, truth) for truth in row.boxes)
    return {"score": float(iou >= IOU_THRESHOLD), "iou": iou, "box": [round(value, 2) for value in box]}


def score_rows(
    benchmark: Benchmark, predictions: list[str], image_sizes: list[tuple[int, int]], settings: ImageSettings
) -> list[dict]:
    """Per row: ``score`` and what it was computed from (the extracted option, the mapped box and its IoU).

    ``image_sizes`` are the (width, height) of each row's first image, which grounding boxes are mapped to through
    the resize ``settings`` of the model's processor.
    """
    assert len(predictions) == len(benchmark.rows) == len(image_sizes), "one prediction and image size per row"
    answers = [scored_answer(prediction) for prediction in predictions]
    metric = benchmark.metric
    if metric == CIDER:
        return [{"score": score} for score in cider_d(answers, [list(row.answers) for row in benchmark.rows])]
    if metric == GROUNDING:
        return [_grounding(row, answer, size, settings) for row, answer, size in zip(benchmark.rows, answers, image_sizes)]
    if metric == MULTIPLE_CHOICE:
        picked = [extract_option(answer, row.options) for row, answer in zip(benchmark.rows, answers)]
        return [
            {"score": float(option == row.answers[0]), "extracted": option} for row, option in zip(benchmark.rows, picked)
        ]
    score = _VQA_METRICS[metric]
    return [{"score": score(answer, row.answers)} for row, answer in zip(benchmark.rows, answers)]
