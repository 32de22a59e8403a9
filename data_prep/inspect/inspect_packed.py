"""Show a packed dataset to a person: statistics, or one packed sample as text with images, videos and loss.

Without --sample it prints the dataset statistics from manifest.json: tokens, images, videos and
loss tokens per kind, padding fraction, the document-length histogram, split and dropped documents.
With --sample N (and --tokenizer) it prints packed sample N document by document: each run of
text with its M-RoPE positions and whether the loss trains on it ("loss") or it is context
("ctx"), each image as a marker with its size, grid and positions, each video as a marker with its
frames, size, grid, seconds per temporal patch, the time it covers and its positions, the grounding
boxes found in the text with the image they refer to, and the actions and points of GUI documents'
answers. --tokens A:B adds a token-by-token table; --draw DIR saves the sample's images with their
boxes, GUI actions and points drawn, and each video as a strip of a few of its frames with their
timestamps.

examples:
  python -m data_prep inspect packed/8k
  python -m data_prep inspect packed/8k --sample 17 --tokenizer tok.json --tokens 0:40 --draw /tmp/look
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from data_prep.inspect.gui_answers import answer_lines, draw_answer, gui_answer
from data_prep.pack.statistics import print_summary
from megatron_vl.data.packed_format import PackedDataset, PackedSample
from megatron_vl.data.packed_manifest import PackedManifest
from megatron_vl.tokenizer import Tokenizer, load_tokenizer

BOX = re.compile(r'\{[^{}]*"bbox_2d"\s*:\s*\[[^\]]*\][^{}]*\}')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="packed dataset directory (holding manifest.json)")
    parser.add_argument("--sample", type=int, help="show this packed sample (0-based, across all shards)")
    parser.add_argument("--tokenizer", help="the tokenizer the dataset was packed with (needed by --sample)")
    parser.add_argument("--tokens", metavar="A:B", help="with --sample: also list tokens A to B-1 one per line")
    parser.add_argument("--draw", metavar="DIR", help="with --sample: save its images with the boxes and GUI "
                        "actions drawn, and each video as a strip of frames with their timestamps, here")


def run(args: argparse.Namespace) -> int:
    directory = args.directory  # a local folder or a URL: the manifest and the one sample are all inspect reads
    if args.sample is None:
        print_statistics(PackedManifest.load(directory), directory)
        return 0
    if args.tokenizer is None:
        raise ValueError("--sample needs --tokenizer: the tokenizer the dataset was packed with, to show its text")
    dataset = PackedDataset(directory)
    tokenizer = load_tokenizer(args.tokenizer)
    if tokenizer.fingerprint != dataset.manifest.tokenizer_fingerprint:
        raise ValueError(
            f"tokenizer {args.tokenizer} is not the one {directory} was packed with (fingerprint "
            f"{tokenizer.fingerprint[:12]} vs {dataset.manifest.tokenizer_fingerprint[:12]}); pass that one"
        )
    if not 0 <= args.sample < len(dataset):
        raise ValueError(f"--sample {args.sample} is out of range: {directory} has {len(dataset)} samples")
    sample = dataset[args.sample]
    settings = dataset.manifest.image_settings
    print(describe_sample(sample, tokenizer, patch=settings.patch_size,
                          temporal_patch_size=settings.temporal_patch_size, title=f"sample {args.sample}"))
    if args.tokens:
        start, _, end = args.tokens.partition(":")
        print(token_table(sample, tokenizer, int(start or 0), int(end or sample.seq_len)))
    if args.draw:
        prefix = f"sample{args.sample}"
        for path in draw_boxes(sample, tokenizer, Path(args.draw), prefix=prefix) + draw_video_strips(
            sample, Path(args.draw), prefix=prefix, temporal_patch_size=settings.temporal_patch_size
        ):
            print(f"wrote {path}")
    return 0


def print_statistics(manifest: PackedManifest, directory: str) -> None:
    print_summary(manifest, str(directory))
    total_bytes = sum(entry.bytes for entry in manifest.shards)
    print(f"  {total_bytes / 1e6:.1f} MB; packed with {dict(sorted(dataclasses.asdict(manifest.pack_settings).items()))}")
    for number, source in enumerate(manifest.sources):
        print(f"  input {number}: {source.path} ({source.samples} samples)")
    histogram = manifest.document_length_histogram
    counts = histogram.counts
    widest = max(counts) if counts else 0
    print("  document length histogram (tokens):")
    for low, high, count in zip(histogram.edges[:-1], histogram.edges[1:], counts):
        bar = "#" * round(40 * count / widest) if widest else ""
        print(f"    {low:>7} - {high - 1:<7}{count:>9}  {bar}")


def _document_runs(sample: PackedSample, start: int, end: int, tokenizer: Tokenizer):
    """``(first, last + 1, vision, trained)`` runs of one document's tokens; ``vision`` is "image" or "video" for
    the markers and placeholders of one, None for text."""
    tokens = sample.tokens
    vision_start, vision_end = tokenizer.vision_start_id, tokenizer.vision_end_id
    # Token i is trained on when it is the label of token i - 1 with the loss mask on.
    trained = np.zeros(end - start, dtype=bool)
    trained[1:] = sample.loss_mask[start : end - 1].astype(bool)
    i = start
    while i < end:
        if tokens[i] == vision_start:
            close = i + int(np.argmax(tokens[i:end] == vision_end))
            yield i, close + 1, "video" if tokens[i + 1] == tokenizer.video_pad_id else "image", False
            i = close + 1
            continue
        j = i
        while j < end and tokens[j] != vision_start and trained[j - start] == trained[i - start]:
            j += 1
        yield i, j, None, bool(trained[i - start])
        i = j


def describe_sample(
    sample: PackedSample, tokenizer: Tokenizer, *, patch: int, temporal_patch_size: int, title: str
) -> str:
    """The sample as readable text: documents, text runs with positions and loss, images, videos, boxes."""
    lines = [
        f"{title}: {sample.seq_len} tokens, {len(sample.seq_lens)} documents, {len(sample.images)} images, "
        f"{len(sample.videos)} videos, {sample.num_padding} padding, {int(sample.loss_mask.sum())} loss tokens"
    ]
    image_number = video_number = 0
    cu = sample.cu_seqlens
    for d, record in enumerate(sample.documents):
        start, end = int(cu[d]), int(cu[d + 1])
        source, origin = record.source, record.origin or {}
        where = ", ".join(f"{key} {value}" for key, value in origin.items())
        lines.append(
            f"\ndocument {d + 1} of {len(sample.documents)}: tokens {start}-{end - 1} ({end - start}), kind "
            f"{record.kind}, part {record.part[0]}/{record.part[1]}, {record.loss_tokens} loss tokens\n"
            f"  from input {source.input} {source.shard} key {source.key} ({where})"
        )
        images_in_document = []
        for first, last, vision, trained in _document_runs(sample, start, end, tokenizer):
            positions = sample.position_ids[:, first:last]
            if vision == "video":
                lines.append(f"  {_span(positions[0]):>13}  ctx   "
                             + _video_marker(sample, video_number, positions, patch, temporal_patch_size))
                video_number += 1
            elif vision == "image":
                t, h, w = sample.image_grid_thw[image_number]
                text = (f"<image {image_number}: {h * patch}x{w * patch} px, grid {t}x{h}x{w}, {last - first - 2} "
                        f"tokens, t {_span(positions[0, 1:-1])} h {_span(positions[1, 1:-1])} "
                        f"w {_span(positions[2, 1:-1])}>")
                images_in_document.append((image_number, first))
                image_number += 1
                lines.append(f"  {_span(positions[0]):>13}  ctx   {text}")
            else:
                text = tokenizer.decode(sample.tokens[first:last].tolist()).replace("\n", "\u23ce")
                lines.append(f"  {_span(positions[0]):>13}  {'loss' if trained else 'ctx ':<4}  {text}")
        lines += _box_lines(sample, tokenizer, start, end, images_in_document)
        answer = gui_answer(sample, tokenizer, start, end, images_in_document) if record.kind == "gui" else None
        if answer is not None:
            sizes = [Image.open(io.BytesIO(image)).size for image in sample.images]
            lines += answer_lines(answer, sizes)
    if sample.num_padding:
        lines.append(f"\npadding: tokens {int(cu[-1])}-{sample.seq_len - 1}")
    return "\n".join(lines)


def _video_marker(sample: PackedSample, k: int, positions: np.ndarray, patch: int, temporal_patch_size: int) -> str:
    """``<video k: ...>``: frames, size, grid, time per temporal patch and covered, tokens and positions."""
    t, h, w = sample.video_grid_thw[k]
    seconds = sample.second_per_grid_ts[k]
    frames = len(sample.videos[k])
    fps = temporal_patch_size / seconds
    return (f"<video {k}: {frames} frames of {h * patch}x{w * patch} px at {fps:.3g} fps, grid {t}x{h}x{w}, "
            f"{seconds:.3g} s per temporal patch, covers {frames / fps:.3g} s, {positions.shape[1] - 2} tokens, "
            f"t {_span(positions[0, 1:-1])} h {_span(positions[1, 1:-1])} w {_span(positions[2, 1:-1])}>")


def _span(values: np.ndarray) -> str:
    low, high = int(values.min()), int(values.max())
    return f"{low}" if low == high else f"{low}-{high}"


def _boxes(sample: PackedSample, tokenizer: Tokenizer, start: int, end: int, images: list[tuple[int, int]]):
    """``(box, label, image number or None)`` of each grounding box in the document's text."""
    found = []
    for first, last, vision, _ in _document_runs(sample, start, end, tokenizer):
        if vision is not None:
            continue
        before = [number for number, position in images if position < first]
        image = before[-1] if before else (images[0][0] if images else None)
        for match in BOX.finditer(tokenizer.decode(sample.tokens[first:last].tolist())):
            try:
                entry = json.loads(match.group(0))
            except json.JSONDecodeError:
                continue
            found.append((entry["bbox_2d"], entry.get("label", ""), image))
    return found


def _box_lines(sample, tokenizer, start, end, images) -> list[str]:
    lines = []
    for box, label, image in _boxes(sample, tokenizer, start, end, images):
        if image is None:
            lines.append(f"  box {box} {label!r}: the document has no image")
            continue
        width, height = Image.open(io.BytesIO(sample.images[image])).size
        inside = len(box) == 4 and 0 <= box[0] <= box[2] <= width and 0 <= box[1] <= box[3] <= height
        lines.append(f"  box {box} {label!r} on image {image} ({width}x{height}): "
                     f"{'inside' if inside else 'OUTSIDE the image'}")
    return lines


def token_table(sample: PackedSample, tokenizer: Tokenizer, start: int, end: int) -> str:
    """One line per token: index, id, text, t/h/w position, label and loss mask."""
    end = min(end, sample.seq_len)
    lines = [f"\n{'index':>7} {'id':>7}  {'token':<20}{'t':>6}{'h':>6}{'w':>6}{'label':>8}  loss"]
    for j in range(max(start, 0), end):
        piece = tokenizer.decode([int(sample.tokens[j])]).replace("\n", "\u23ce")
        t, h, w = sample.position_ids[:, j].tolist()
        lines.append(f"{j:>7} {int(sample.tokens[j]):>7}  {piece!r:<20}{t:>6}{h:>6}{w:>6}"
                     f"{int(sample.labels[j]):>8}  {int(sample.loss_mask[j])}")
    return "\n".join(lines)


def draw_boxes(sample: PackedSample, tokenizer: Tokenizer, directory: Path, *, prefix: str) -> list[Path]:
    """Save each image of the sample as PNG with the grounding boxes, GUI actions and points that refer to it
    drawn."""
    os.makedirs(directory, exist_ok=True)
    pictures = [Image.open(io.BytesIO(image)).convert("RGB") for image in sample.images]
    cu = sample.cu_seqlens
    image_number = 0
    for d in range(len(sample.seq_lens)):
        start, end = int(cu[d]), int(cu[d + 1])
        starts = [first for first, _, vision, _ in _document_runs(sample, start, end, tokenizer) if vision == "image"]
        images = [(image_number + k, position) for k, position in enumerate(starts)]
        image_number += len(images)
        for box, label, image in _boxes(sample, tokenizer, start, end, images):
            if image is not None and len(box) == 4:
                draw = ImageDraw.Draw(pictures[image])
                draw.rectangle(box, outline=(255, 0, 0), width=2)
                draw.text((box[0] + 2, box[1] + 2), str(label), fill=(255, 0, 0))
        answer = gui_answer(sample, tokenizer, start, end, images) if sample.documents[d].kind == "gui" else None
        if answer is not None and answer.entries is not None and answer.image is not None:
            draw_answer(pictures[answer.image], answer)
    paths = []
    for k, picture in enumerate(pictures):
        path = directory / f"{prefix}-image{k}.png"
        picture.save(path)
        paths.append(path)
    return paths


STRIP_FRAMES = 6
"""Most frames a video's strip shows, evenly spread over the video."""


def draw_video_strips(sample: PackedSample, directory: Path, *, prefix: str, temporal_patch_size: int) -> list[Path]:
    """Save each video of the sample as one PNG: up to ``STRIP_FRAMES`` of its frames side by side, each with its
    timestamp (frame j of frames stored at ``fps`` is at j / fps seconds)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for k, (frames, seconds) in enumerate(zip(sample.videos, sample.second_per_grid_ts)):
        fps = temporal_patch_size / seconds
        spread = np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int)
        shown = sorted(set(spread.tolist()))
        pictures = [Image.open(io.BytesIO(frames[j])).convert("RGB") for j in shown]
        width, height = pictures[0].size
        label = 14  # a row under the frames for the timestamps
        strip = Image.new("RGB", (len(pictures) * (width + 4), height + label), (255, 255, 255))
        draw = ImageDraw.Draw(strip)
        for n, (j, picture) in enumerate(zip(shown, pictures)):
            strip.paste(picture, (n * (width + 4), 0))
            draw.text((n * (width + 4) + 1, height + 1), f"{j / fps:.1f}s", fill=(0, 0, 0))
        path = directory / f"{prefix}-video{k}.png"
        strip.save(path)
        paths.append(path)
    return paths
