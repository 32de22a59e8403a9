"""Draw a small, learnable raw corpus of every kind (the input of the README demo and the tests).

Writes, under --out, one JSONL per kind in ingest's raw schema (caption.jsonl, interleaved.jsonl,
ocr.jsonl, grounding.jsonl, cot.jsonl, text.jsonl, video_caption.jsonl, video_grounding.jsonl,
interleaved_video.jsonl, gui.jsonl, language.jsonl: picture documents' text without pictures, for the
LLM's text-only warm-up) plus the stage-4 long documents (interleaved_long.jsonl: 8-16
larger pictures, cot_long.jsonl: long running sums, video_caption_long.jsonl: 8-16 s videos), the
pictures it draws under images/ (PNG, some JPEG, mostly non-square) and the videos under videos/
(H.264 MP4): shapes with captions that describe them, shapes at known boxes for grounding, rendered
text for OCR, pictures between text for interleaved documents, arithmetic with <think> traces,
moving shapes with captions that say what happens when and the time spans of events, and GUI
screenshots with instructions answered by targets or actions. The same --seed gives the same bytes.
--benchmark-files also writes the caption and grounding documents as benchmark files for
checkpoints_tools.evaluate (the demo scores each stage on a held-out corpus drawn with another seed).

examples:
  python -m data_prep demo-corpus --out demo_raw/ --samples-per-kind 500
  python -m data_prep demo-corpus --out demo_raw/ --kinds video_caption video_grounding gui --samples-per-kind 50
  python -m data_prep demo-corpus --out held_out/ --seed 1 --kinds caption grounding --samples-per-kind 40 \
      --benchmark-files
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

from data_prep.demo import documents, gui_documents, video_documents
from data_prep.demo.benchmark_files import write_benchmark_files
from data_prep.demo.documents import Canvas
from data_prep.parallel_map import ordered_map
from megatron_vl.config.validation import fraction
from megatron_vl.progress import track

JPEG_QUALITY = 90
GENERATORS = {**documents.GENERATORS, **video_documents.GENERATORS, **gui_documents.GENERATORS}
LONG_GENERATORS = {**documents.LONG_GENERATORS, **video_documents.LONG_GENERATORS}
VIDEO_KINDS = (*video_documents.GENERATORS, *video_documents.LONG_GENERATORS)
"""Files whose pictures are drawn at the video sides (--video-min-side / --video-max-side)."""
SCORED_KINDS = ("caption", "grounding")
"""The kinds ``--benchmark-files`` turns into benchmark files, whose count --caption-and-grounding-samples sets."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (JSONL files and images/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the corpus is a function of it (default 0)")
    parser.add_argument("--samples-per-kind", type=int, default=500, help="documents of each kind (default 500)")
    parser.add_argument("--caption-and-grounding-samples", type=int, default=None,
                        help="documents in caption.jsonl and grounding.jsonl, the kinds a demo model is scored on "
                             "(default: --samples-per-kind)")
    parser.add_argument("--long-samples", type=int, default=50,
                        help="documents in each of interleaved_long, cot_long and video_caption_long (default 50)")
    parser.add_argument("--language-samples", type=int, default=20000,
                        help="documents in language.jsonl, the LLM's text-only warm-up (default 20000; no pictures)")
    parser.add_argument("--benchmark-files", action="store_true",
                        help="also write benchmarks/captions.jsonl and benchmarks/grounding.jsonl from the caption and "
                             "grounding documents, for checkpoints_tools.evaluate (for a held-out corpus)")
    parser.add_argument("--kinds", nargs="+", choices=[*GENERATORS, *LONG_GENERATORS],
                        default=[*GENERATORS, *LONG_GENERATORS], help="which files to write (default: all)")
    parser.add_argument("--min-side", type=int, default=56, help="smallest picture side in pixels (default 56)")
    parser.add_argument("--max-side", type=int, default=224, help="largest picture side in pixels (default 224)")
    parser.add_argument("--long-min-side", type=int, default=224,
                        help="smallest picture side of the long documents (default 224)")
    parser.add_argument("--long-max-side", type=int, default=448,
                        help="largest picture side of the long documents (default 448)")
    parser.add_argument("--video-min-side", type=int, default=64,
                        help="smallest video frame side in pixels, even (default 64)")
    parser.add_argument("--video-max-side", type=int, default=160,
                        help="largest video frame side in pixels, even (default 160)")
    parser.add_argument("--jpeg-fraction", type=float, default=0.25,
                        help="share of pictures saved as JPEG instead of PNG (default 0.25)")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing documents (default 1)")


class _Saver:
    """Saves the pictures of one document as images/<file>/<document>_<k>.png|jpg and its videos as
    videos/<file>/<document>_<k>.mp4 under ``root``."""

    def __init__(self, root: str, name: str, index: int, rng: random.Random, jpeg_fraction: float) -> None:
        self.root, self.rng, self.jpeg_fraction = root, rng, jpeg_fraction
        self.stem, self.video_stem = f"images/{name}/{index:06d}", f"videos/{name}/{index:06d}"
        self.count = self.videos = 0
        self.bytes = 0

    def __call__(self, image: Image.Image, lossless: bool = False) -> str:
        jpeg = not lossless and self.rng.random() < self.jpeg_fraction
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

    def video(self, data: bytes) -> str:
        path = f"{self.video_stem}_{self.videos}.mp4"
        with open(os.path.join(self.root, path), "wb") as file:
            file.write(data)
        self.videos += 1
        self.bytes += len(data)
        return path


def _draw_document(task: tuple) -> tuple[bytes, int, int, int]:
    """(JSONL line, pictures, videos, picture and video bytes) of document ``index`` of file ``name``."""
    root, name, index, seed, sides, jpeg_fraction = task
    rng = random.Random(f"{seed}/{name}/{index}")
    saver = _Saver(root, name, index, random.Random(f"{seed}/{name}/{index}/files"), jpeg_fraction)
    generate = {**GENERATORS, **LONG_GENERATORS}[name]
    record = generate(rng, Canvas(save=saver, save_video=saver.video, min_side=sides[0], max_side=sides[1]))
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"), saver.count, saver.videos, saver.bytes


def _document_count(args: argparse.Namespace, name: str) -> int:
    if name in LONG_GENERATORS:
        return args.long_samples
    if name == "language":
        return args.language_samples
    if name in SCORED_KINDS and args.caption_and_grounding_samples is not None:
        return args.caption_and_grounding_samples
    return args.samples_per_kind


def run(args: argparse.Namespace) -> int:
    for low, high, option in ((args.min_side, args.max_side, "--min-side/--max-side"),
                              (args.long_min_side, args.long_max_side, "--long-min-side/--long-max-side")):
        if not 16 <= low <= high:
            raise ValueError(f"{option} must satisfy 16 <= min <= max, got {low} and {high}")
    if not 16 <= args.video_min_side <= args.video_max_side or args.video_min_side % 2 or args.video_max_side % 2:
        raise ValueError(
            f"--video-min-side/--video-max-side must be even and satisfy 16 <= min <= max (H.264's colour planes "
            f"are half size), got {args.video_min_side} and {args.video_max_side}"
        )
    fraction("demo-corpus", "jpeg_fraction", args.jpeg_fraction)
    started = time.perf_counter()
    counts: collections.Counter[str] = collections.Counter()
    pictures = videos = media_bytes = 0
    for name in args.kinds:
        long = name in LONG_GENERATORS
        count = _document_count(args, name)
        if name in VIDEO_KINDS:
            sides = (args.video_min_side, args.video_max_side)
        else:
            sides = (args.long_min_side, args.long_max_side) if long else (args.min_side, args.max_side)
        os.makedirs(os.path.join(args.out, "images", name), exist_ok=True)
        if name in VIDEO_KINDS:
            os.makedirs(os.path.join(args.out, "videos", name), exist_ok=True)
        tasks = ((args.out, name, index, args.seed, sides, args.jpeg_fraction) for index in range(count))
        with open(os.path.join(args.out, f"{name}.jsonl"), "wb") as file:
            for line, images, clips, size in track(ordered_map(_draw_document, tasks, workers=args.workers),
                                            total=count, unit="document", desc=name):
                file.write(line)
                counts[name] += 1
                pictures += images
                videos += clips
                media_bytes += size
    seconds = time.perf_counter() - started
    print(f"\nwrote {sum(counts.values())} documents, {pictures} pictures and {videos} videos "
          f"({media_bytes / 1e6:.1f} MB) to {args.out} in {seconds:.1f}s")
    for name, count in counts.items():
        print(f"  {name + '.jsonl':<24}{count:>7}")
    if args.benchmark_files:
        for path in write_benchmark_files(args.out):
            print(f"benchmark file {path}")
    return 0
