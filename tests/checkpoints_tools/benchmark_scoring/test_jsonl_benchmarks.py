"""Grounding and caption JSONL: rows, prompts, inferred metric, and errors naming file and row."""

import json
from pathlib import Path

import pytest
from PIL import Image

from checkpoints_tools.benchmark_scoring.benchmark_files import PromptSettings, read_benchmark
from checkpoints_tools.benchmark_scoring.benchmark_rows import decode_row_images
from tests.checkpoints_tools.benchmark_scoring.test_tsv_benchmarks import png_base64


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_grounding_records(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "refcoco.jsonl", [
        {"image": "a.png", "query": "the cat", "boxes": [[1, 2, 30, 20]], "category": "animals"},
        {"index": "x7", "image": "data:image/png;base64," + png_base64(10, 12), "query": "a dog", "boxes": [[0, 0, 5, 5], [5, 5, 9, 9]]},
    ])
    benchmark = read_benchmark(path, prompts=PromptSettings(grounding_prompt='Find {query}: [{"bbox_2d": ...}]'))
    assert benchmark.metric == "grounding"
    first, second = benchmark.rows
    assert first.index == "1" and first.images == (tmp_path / "a.png",) and first.category == "animals"
    assert first.prompt == 'Find the cat: [{"bbox_2d": ...}]' and first.boxes == ((1, 2, 30, 20),)
    assert second.index == "x7" and len(second.boxes) == 2
    assert decode_row_images(path, second)[0].size == (10, 12)


def test_caption_records(tmp_path):
    path = write_jsonl(tmp_path / "coco.jsonl", [{"image": png_base64(8, 8), "captions": ["a cat.", "a kitten"]}])
    [row] = read_benchmark(path).rows
    assert read_benchmark(path).metric == "cider"
    assert row.answers == ("a cat.", "a kitten") and row.prompt == "Describe the image in one sentence."


@pytest.mark.parametrize(("record", "message"), [
    ({"image": "a.png", "query": "q", "boxes": [[3, 0, 1, 5]]}, r"row 1: box \[3, 0, 1, 5\] is not"),
    ({"image": "a.png", "query": "q", "boxes": []}, r"row 1: has no 'boxes'"),
    ({"image": "a.png", "boxes": [[0, 0, 1, 1]]}, r"row 1: has no 'query' text"),
    ({"query": "q", "boxes": [[0, 0, 1, 1]]}, r"row 1: has no 'image'"),
    ({"image": "a.png", "captions": []}, r"row 1: has no 'captions'"),
])
def test_malformed_records(tmp_path, record, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [record])
    metric = "cider" if "captions" in record else "grounding"
    with pytest.raises(ValueError, match=message):
        read_benchmark(path, metric)


def test_lines_that_are_not_records_and_missing_images(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"image": "a.png", "captions": ["x"]}\n\n{not json\n')
    with pytest.raises(ValueError, match=r"broken.jsonl: line 3 is not JSON"):
        read_benchmark(path)
    path.write_text('["a.png"]\n')
    with pytest.raises(ValueError, match=r"line 1 is list, not a JSON object"):
        read_benchmark(path, "cider")
    path = write_jsonl(tmp_path / "missing.jsonl", [{"image": "gone.png", "captions": ["x"]}])
    [row] = read_benchmark(path).rows
    with pytest.raises(ValueError, match=r"missing.jsonl: row 1: image file .*gone.png does not exist"):
        decode_row_images(path, row)
    with pytest.raises(ValueError, match="neither 'boxes'"):
        read_benchmark(write_jsonl(tmp_path / "what.jsonl", [{"image": "a.png"}]))
