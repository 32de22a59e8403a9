"""Draw a small, learnable raw corpus of every kind (the input of the README demo and the tests).

Writes, under --out, one JSONL per kind in ingest's raw schema (caption.jsonl, interleaved.jsonl,
ocr.jsonl, grounding.jsonl, cot.jsonl, text.jsonl) plus the stage-4 long documents
(interleaved_long.jsonl: 8-16 larger pictures, cot_long.jsonl: long running sums), and the
pictures it draws under images/ (PNG, some JPEG, mostly non-square): shapes with captions that
describe them, shapes at known boxes for grounding, rendered text for OCR, pictures between text
for interleaved documents, arithmetic with <think> traces. The same --seed gives the same bytes.

example:
  python -m data_prep demo-corpus --out demo_raw/ --samples-per-kind 500
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import time

from PIL import Image

from data_prep.demo.documents import GENERATORS, LONG_GENERATORS, Canvas
from data_prep.parallel_map import ordered_map
from megatron_vl.config.validation import fraction
from megatron_vl.progress import track

JPEG_QUALITY = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (JSONL files and images/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the corpus is a function of it (default 0)")
    parser.add_argument("--samples-per-kind", type=int, default=500, help="documents of each kind (default 500)")
    parser.add_argument("--long-samples", type=int, default=50,
                        help="documents in each of interleaved_long and cot_long (default 50)")
    parser.add_argument("--kinds", nargs="+", choices=[*GENERATORS, *LONG_GENERATORS],
                        default=[*GENERATORS, *LONG_GENERATORS], help="which files to write (default: all)")
    parser.add_argument("--min-side", type=int, default=56, help="smallest picture side in pixels (default 56)")
    parser.add_argument("--max-side", type=int, default=224, help="largest picture side in pixels (default 224)")
    parser.add_argument("--long-min-side", type=int, default=224,
                        help="smallest picture side of the long documents (default 224)")
    parser.add_argument("--long-max-side", type=int, default=448,
                        help="largest picture side of the long documents (default 448)")
    parser.add_argument("--jpeg-fraction", type=float, default=0.25,
                        help="share of pictures saved as JPEG instead of PNG (default 0.25)")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing documents (default 1)")


class _Saver:
    """Saves the pictures of one document as images/<file>/<document>_<k>.png|jpg under ``root``."""

    def __init__(self, root: str, name: str, index: int, rng: random.Random, jpeg_fraction: float) -> None:
        self.root, self.stem, self.rng, self.jpeg_fraction = root, f"images/{name}/{index:06d}", rng, jpeg_fraction
        self.count = 0
        self.bytes = 0

    def __call__(self, image: Image.Image) -> str:
        jpeg = self.rng.random() < self.jpeg_fraction
        path = f"{self.stem}_{self.count}.{'jpg' if jpeg else 'png'}"
        buffer = io.BytesIO()
        if jpeg:
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        else:
            image.save(buffer, format="PNG")
        with open(os.path.join(self.root, path), "wb") as file:
            file.write(buffer.getvalue())
        self.count += 1
        self.bytes += len(buffer.getvalue())
        return path


def _draw_document(task: tuple) -> tuple[bytes, int, int]:
    """(JSONL line, pictures, picture bytes) of document ``index`` of file ``name``."""
    root, name, index, seed, sides, jpeg_fraction = task
    rng = random.Random(f"{seed}/{name}/{index}")
    saver = _Saver(root, name, index, random.Random(f"{seed}/{name}/{index}/files"), jpeg_fraction)
    generate = {**GENERATORS, **LONG_GENERATORS}[name]
    record = generate(rng, Canvas(save=saver, min_side=sides[0], max_side=sides[1]))
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"), saver.count, saver.bytes


def run(args: argparse.Namespace) -> int:
    for low, high, option in ((args.min_side, args.max_side, "--min-side/--max-side"),
                              (args.long_min_side, args.long_max_side, "--long-min-side/--long-max-side")):
        if not 16 <= low <= high:
            raise ValueError(f"{option} must satisfy 16 <= min <= max, got {low} and {high}")
    fraction("demo-corpus", "jpeg_fraction", args.jpeg_fraction)
    started = time.perf_counter()
    counts: collections.Counter[str] = collections.Counter()
    pictures = picture_bytes = 0
    for name in args.kinds:
        long = name in LONG_GENERATORS
        count = args.long_samples if long else args.samples_per_kind
        sides = (args.long_min_side, args.long_max_side) if long else (args.min_side, args.max_side)
        os.makedirs(os.path.join(args.out, "images", name), exist_ok=True)
        tasks = ((args.out, name, index, args.seed, sides, args.jpeg_fraction) for index in range(count))
        with open(os.path.join(args.out, f"{name}.jsonl"), "wb") as file:
            for line, images, size in track(ordered_map(_draw_document, tasks, workers=args.workers),
                                            total=count, unit="document", desc=name):
                file.write(line)
                counts[name] += 1
                pictures += images
                picture_bytes += size
    seconds = time.perf_counter() - started
    print(f"\nwrote {sum(counts.values())} documents and {pictures} pictures ({picture_bytes / 1e6:.1f} MB) "
          f"to {args.out} in {seconds:.1f}s")
    for name, count in counts.items():
        print(f"  {name + '.jsonl':<24}{count:>7}")
    return 0
