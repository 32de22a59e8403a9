"""The chance level of a benchmark: the scores of a model that ignores the picture and the question.

Each row is answered with the reference answer of the next row (the last with the first's): another question's
option letter, another picture's caption, another picture's first box placed at the same relative position in
this picture. The answers are plausible in form and in distribution, but unrelated to the row, so what a model
scores above this it owes to reading the row. The answers go through the same scoring as a model's.
"""

from __future__ import annotations

import json

from checkpoints_tools.benchmark_scoring.benchmark_rows import GROUNDING, Benchmark, decode_row_images
from checkpoints_tools.benchmark_scoring.grounding_answers import resized_size
from megatron_vl.data.images import ImageSettings


def image_sizes(benchmark: Benchmark) -> list[tuple[int, int]]:
    """(width, height) of each row's first image."""
    return [decode_row_images(benchmark.path, row)[0].size for row in benchmark.rows]


def chance_answers(benchmark: Benchmark, sizes: list[tuple[int, int]], settings: ImageSettings) -> list[str]:
    """Each row's answer taken from the next row, written as a model would write it."""
    rows = benchmark.rows
    following = rows[1:] + rows[:1]
    if benchmark.metric != GROUNDING:
        return [row.answers[0] for row in following]
    answers = []
    for size, other, other_size in zip(sizes, following, sizes[1:] + sizes[:1]):
        width, height = resized_size(*size, settings)
        x1, y1, x2, y2 = other.boxes[0]
        relative = (x1 / other_size[0], y1 / other_size[1], x2 / other_size[0], y2 / other_size[1])
        box = [round(relative[0] * width), round(relative[1] * height), round(relative[2] * width),
               round(relative[3] * height)]
        answers.append(json.dumps([{"bbox_2d": box, "label": "chance"}]))
    return answers
