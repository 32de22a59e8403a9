"""Boxes read from grounding answers, mapped from the resized image back to original pixels, and scored."""

from pathlib import Path

import pytest

from checkpoints_tools.benchmark_scoring.benchmark_rows import GROUNDING, Benchmark, BenchmarkRow
from checkpoints_tools.benchmark_scoring.grounding_answers import parse_boxes, resized_size, to_original
from checkpoints_tools.benchmark_scoring.row_scoring import score_rows
from megatron_vl.data.images import ImageSettings


def test_parse_mimo_vl_answers():
    answer = '```json\n[{"bbox_2d": [10, 20, 110, 220], "label": "car"}, {"bbox_2d": [1.5, 2, 3, 4.25]}]\n```'
    assert parse_boxes(answer) == [(10, 20, 110, 220), (1.5, 2, 3, 4.25)]
    assert parse_boxes("<think>the car</think>[{'bbox_2d': [ 1 , 2 , 3 , 4 ]") == [(1, 2, 3, 4)]


def test_bare_boxes_only_without_bbox_2d():
    assert parse_boxes("It is at [5, 6, 7, 8] and [1, 1, 2, 2].") == [(5, 6, 7, 8)]
    assert parse_boxes('{"bbox_2d": [1, 2, 3, 4]} not [5, 6, 7, 8]') == [(1, 2, 3, 4)]
    assert parse_boxes("no box here, [1, 2, 3]") == []


def test_resized_size_is_the_processors():
    settings = ImageSettings(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    # 1000 x 500 has too many pixels: scale sqrt(500000 / 50176) = 3.157; floor(1000 / 3.157 / 28) * 28 = 308,
    # floor(500 / 3.157 / 28) * 28 = 140.
    assert resized_size(1000, 500, settings) == (308, 140)
    assert resized_size(224, 112, settings) == (224, 112)


def test_to_original_scales_each_axis_and_clips():
    assert to_original((30.8, 14, 154, 70), (1000, 500), (308, 140)) == pytest.approx((100, 50, 500, 250))
    assert to_original((-5, 0, 400, 150), (1000, 500), (308, 140)) == pytest.approx((0, 0, 1000, 500))


def test_grounding_rows_are_scored_in_original_pixels():
    settings = ImageSettings(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    rows = [
        BenchmarkRow(index=str(i), images=(Path("x.png"),), prompt="p", boxes=((100, 50, 500, 250), (0, 0, 10, 10)))
        for i in range(4)
    ]
    predictions = [
        '[{"bbox_2d": [30.8, 14, 154, 70]}]',  # exactly the first box once mapped back
        '[{"bbox_2d": [30.8, 14, 92.4, 70]}]',  # (100, 50, 300, 250): IoU 0.5 with the first box, a hit
        '[{"bbox_2d": [200, 100, 300, 140]}]',  # no overlap with either box
        "I do not know.",
    ]
    scored = score_rows(Benchmark(Path("g.jsonl"), GROUNDING, rows), predictions, [(1000, 500)] * 4, settings)
    assert [row["score"] for row in scored] == [1.0, 1.0, 0.0, 0.0]
    assert [row["iou"] for row in scored] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert scored[0]["box"] == pytest.approx([100, 50, 500, 250]) and scored[3]["box"] is None
    # Read in the resized pixels directly (no mapping), the first answer would miss.
    assert scored[0]["iou"] != pytest.approx(0.0)
