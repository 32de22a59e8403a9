"""The demo corpus's held-out benchmark files, in the formats ``checkpoints_tools.evaluate`` scores: the drawn
caption records as a caption file (the picture and its caption as the one reference) and the grounding records as
a grounding file (the picture, its query, the boxes in pixels of the drawn picture)."""

from __future__ import annotations

import json
import os

BENCHMARKS_DIR = "benchmarks"
CAPTIONS, GROUNDING = "captions.jsonl", "grounding.jsonl"


def _benchmark_record(kind: str, record: dict) -> dict:
    # Pictures are named relative to the benchmark file, which evaluate resolves them against.
    image = os.path.join("..", record["image"])
    if kind == "caption":
        return {"image": image, "captions": [record["caption"]]}
    return {"image": image, "query": record["query"], "boxes": [box["bbox_2d"] for box in record["boxes"]]}


def write_benchmark_files(out: str) -> list[str]:
    """Write ``out/benchmarks/{captions,grounding}.jsonl`` from ``out``'s caption.jsonl and grounding.jsonl (those
    that exist); returns the files written."""
    written = []
    for kind, name in (("caption", CAPTIONS), ("grounding", GROUNDING)):
        source = os.path.join(out, f"{kind}.jsonl")
        if not os.path.isfile(source):
            continue
        os.makedirs(os.path.join(out, BENCHMARKS_DIR), exist_ok=True)
        target = os.path.join(out, BENCHMARKS_DIR, name)
        with open(source, encoding="utf-8") as lines, open(target, "w", encoding="utf-8") as file:
            for line in lines:
                file.write(json.dumps(_benchmark_record(kind, json.loads(line))) + "\n")
        written.append(target)
    return written
