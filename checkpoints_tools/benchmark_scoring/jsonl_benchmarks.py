"""Grounding and caption benchmarks as JSONL, one record per line.

    {"image": "img/0001.jpg", "query": "the red car", "boxes": [[10, 20, 200, 180]], "category": "vehicles"}
    {"image": "img/0002.jpg", "captions": ["A dog runs on the beach.", "A brown dog at the sea."]}

``image`` is a file path (relative to the JSONL file) or base64 (optionally a ``data:image/...;base64,`` URL).
Boxes are ``[x1, y1, x2, y2]`` in pixels of the original image; a grounding record may have several (a predicted
box hits when it overlaps any of them enough). ``index`` (default: the line number) and ``category`` are optional.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from checkpoints_tools.benchmark_scoring.benchmark_rows import CIDER, GROUNDING, BenchmarkRow, row_error

# A path is short and names an existing file; base64 of any real image is far longer.
_BASE64_MIN_LENGTH = 256


def read_jsonl_records(path: Path, limit: int | None) -> list[tuple[str, dict]]:
    """(index, record) of the first ``limit`` records; blank lines are skipped."""
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is {type(record).__name__}, not a JSON object")
            records.append((str(record.get("index", number)), record))
    return records


def jsonl_metric(path: Path) -> str:
    """The metric a JSONL file's first record implies: ``boxes`` -> grounding, ``captions`` -> cider."""
    for _, record in read_jsonl_records(path, 1):
        if "boxes" in record:
            return GROUNDING
        if "captions" in record:
            return CIDER
    raise ValueError(f"{path}: its first record has neither 'boxes' (grounding) nor 'captions' (cider); pass --metric")


def _image(path: Path, index: str, record: dict) -> str | Path:
    image = record.get("image")
    if not isinstance(image, str) or not image:
        raise row_error(path, index, "has no 'image' (a file path or base64 text)")
    if image.startswith("data:") or len(image) >= _BASE64_MIN_LENGTH:
        return image
    return path.parent / image


def _text(path: Path, index: str, record: dict, field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise row_error(path, index, f"has no {field!r} text")
    return value


def _boxes(path: Path, index: str, record: dict) -> tuple[tuple[float, float, float, float], ...]:
    boxes = record.get("boxes")
    if not isinstance(boxes, list) or not boxes:
        raise row_error(path, index, "has no 'boxes' (a list of [x1, y1, x2, y2] in original-image pixels)")
    for box in boxes:
        valid = isinstance(box, list) and len(box) == 4 and all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) for value in box
        )
        if not valid or box[0] >= box[2] or box[1] >= box[3]:
            raise row_error(path, index, f"box {box!r} is not [x1, y1, x2, y2] with x1 < x2 and y1 < y2")
    return tuple(tuple(float(value) for value in box) for box in boxes)


def _captions(path: Path, index: str, record: dict) -> tuple[str, ...]:
    captions = record.get("captions")
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) and c.strip() for c in captions):
        raise row_error(path, index, "has no 'captions' (a non-empty list of reference caption strings)")
    return tuple(captions)


def read_jsonl_benchmark(
    path: Path, metric: str, *, limit: int | None, grounding_prompt: str, caption_prompt: str
) -> list[BenchmarkRow]:
    """The first ``limit`` records (all with None) of a grounding or caption JSONL; ``grounding_prompt`` is a
    template with ``{query}``."""
    rows = []
    for index, record in read_jsonl_records(path, limit):
        image, category = _image(path, index, record), str(record.get("category", ""))
        if metric == GROUNDING:
            prompt = grounding_prompt.replace("{query}", _text(path, index, record, "query"))
            rows.append(BenchmarkRow(
                index=index, images=(image,), prompt=prompt, boxes=_boxes(path, index, record), category=category
            ))
        else:
            rows.append(BenchmarkRow(
                index=index, images=(image,), prompt=caption_prompt, answers=_captions(path, index, record),
                category=category,
            ))
    return rows
