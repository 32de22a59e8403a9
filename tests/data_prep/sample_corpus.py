"""Small sample-shard datasets for the pack tests, written with ingest's own shard writer.

Each corpus holds every case pack must handle: short captions, grounding with a <think> special,
interleaved documents with several images, text-only documents, a text document longer than the
sequence, an interleaved document that must be split around its images, and a document whose
image alone is longer than the sequence. The video corpus (``make_video_samples``) holds video
captions (odd and even frame counts, several frame rates and sizes), interleaved documents mixing
images and videos, one that must be split around its video, and one whose video alone is longer
than the sequence.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os

import numpy as np
from PIL import Image

from data_prep.sample_shards.manifest import MANIFEST_NAME, DedupSettings, IngestManifest
from data_prep.sample_shards.sample_meta import SampleImage, SampleMeta, SampleVideo, sample_key, sample_members
from data_prep.sample_shards.writer import SampleShardWriter, ShardLimit
from megatron_vl.data.images import ImageSettings
from megatron_vl.tokenizer import HFTokenizer, train_bpe_tokenizer

SEQ_LEN = 256
WORDS = ("the red circle blue square green triangle image shows a cat on mat page text reads hello world "
         "answer think step because therefore question box left right top bottom").split()


def words(rng, count):
    return " ".join(rng.choice(WORDS, size=count))


def png(height, width, seed):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_entry(height, width, seed):
    data = png(height, width, seed)
    return SampleImage(height=height, width=width, orig_height=height, orig_width=width,
                       sha256=hashlib.sha256(data).hexdigest()), data


def text(value, loss):
    return {"text": value, "loss": loss}


def make_samples(rng, count):
    """``count`` (meta, pngs) of mixed kinds, then the long-document cases."""
    samples = []
    sizes = [(56, 84), (112, 112), (224, 168), (84, 56), (56, 56)]
    for i in range(count):
        kind = ("caption", "grounding", "interleaved", "text", "cot")[i % 5]
        source = {"file": f"raw/{kind}.jsonl", "line": i + 1}
        if kind == "text":
            samples.append((SampleMeta(kind=kind, source=source, images=[],
                                       segments=[text(words(rng, int(rng.integers(5, 120))), True)]), []))
            continue
        count_images = {"caption": 1, "grounding": 1, "interleaved": 2, "cot": int(rng.integers(0, 2))}[kind]
        entries, pngs = zip(*[image_entry(*sizes[(i + k) % len(sizes)], seed=1000 * i + k)
                              for k in range(count_images)]) if count_images else ((), ())
        segments = []
        for k in range(count_images):
            segments += [{"image": k}, text(words(rng, int(rng.integers(1, 20))), kind == "interleaved")]
        if kind == "grounding":
            segments += [{"special": "<think>", "loss": True}, text('[{"bbox_2d": [10, 20, 40, 50], "label": "cat"}]', True)]
        if kind == "cot":
            segments += [text(words(rng, 10), False), {"special": "<think>", "loss": True},
                         text(words(rng, int(rng.integers(10, 60))), True), {"special": "</think>", "loss": True},
                         text(words(rng, 3), True)]
        samples.append((SampleMeta(kind=kind, source=source, images=list(entries), segments=segments), list(pngs)))
    long_text = SampleMeta(kind="text", source={"file": "raw/long.jsonl", "line": 1}, images=[],
                           segments=[text(words(rng, 700), True)])
    big_entries, big_pngs = zip(*[image_entry(224, 224, seed=7 + k) for k in range(4)])
    long_interleaved = SampleMeta(kind="interleaved", source={"file": "raw/long.jsonl", "line": 2},
                                  images=list(big_entries),
                                  segments=[x for k in range(4) for x in ({"image": k}, text(words(rng, 40), True))])
    huge_entry, huge_png = image_entry(448, 476, seed=9)
    huge_image = SampleMeta(kind="caption", source={"file": "raw/long.jsonl", "line": 3}, images=[huge_entry],
                            segments=[{"image": 0}, text("a large picture", True)])
    return samples + [(long_text, []), (long_interleaved, list(big_pngs)), (huge_image, [huge_png])]


def video_entry(num_frames, height, width, fps, seed):
    """A video of ``num_frames`` random frames of ``height`` x ``width`` stored at ``fps``: (its SampleVideo, its
    frames' PNGs)."""
    frames = [png(height, width, seed * 1000 + j) for j in range(num_frames)]
    video = SampleVideo(num_frames=num_frames, height=height, width=width, orig_height=2 * height,
                        orig_width=2 * width, fps=fps, duration=num_frames / fps,
                        sha256=hashlib.sha256(b"".join(frames)).hexdigest())
    return video, frames


def make_video_samples(rng, count):
    """``count`` (meta, pngs, video frame pngs) of video captions, interleaved image + video documents and text,
    then a document to split around its video and one whose video alone is longer than the sequence."""
    samples = []
    shapes = [(5, 56, 84, 3.0), (4, 28, 28, 2.0), (3, 56, 56, 1.5), (8, 28, 56, 0.5), (6, 84, 56, 2 / 3)]
    for i in range(count):
        kind = ("video_caption", "interleaved", "text")[i % 3]
        source = {"file": f"raw/{kind}.jsonl", "line": i + 1}
        if kind == "text":
            samples.append((SampleMeta(kind=kind, source=source, images=[],
                                       segments=[text(words(rng, int(rng.integers(5, 60))), True)]), [], []))
            continue
        video, frames = video_entry(*shapes[i % len(shapes)], seed=i)
        if kind == "video_caption":
            meta = SampleMeta(kind=kind, source=source, images=[], videos=[video],
                              segments=[{"video": 0}, text(words(rng, int(rng.integers(3, 20))), True)])
            samples.append((meta, [], [frames]))
            continue
        image, image_png = image_entry(56, 28, seed=5000 + i)
        second, second_frames = video_entry(*shapes[(i + 2) % len(shapes)], seed=100 + i)
        segments = [text(words(rng, 4), True), {"video": 0}, text(words(rng, 6), True), {"image": 0},
                    text(words(rng, 3), True), {"video": 1}, text(words(rng, 5), True)]
        samples.append((SampleMeta(kind=kind, source=source, images=[image], videos=[video, second], segments=segments),
                        [image_png], [frames, second_frames]))
    split_video, split_frames = video_entry(8, 56, 84, 2.0, seed=77)
    long_interleaved = SampleMeta(kind="interleaved", source={"file": "raw/long.jsonl", "line": 1}, images=[],
                                  videos=[split_video], segments=[text(words(rng, 230), True), {"video": 0},
                                                                  text(words(rng, 100), True)])
    huge_video, huge_frames = video_entry(8, 224, 280, 2.0, seed=78)
    huge = SampleMeta(kind="video_caption", source={"file": "raw/long.jsonl", "line": 2}, images=[],
                      videos=[huge_video], segments=[{"video": 0}, text("a long clip", True)])
    return samples + [(long_interleaved, [], [split_frames]), (huge, [], [huge_frames])]


def write_sample_dataset(directory, samples, *, shard_samples=4):
    """A sample-shard dataset of ``(meta, pngs)`` or ``(meta, pngs, video frame pngs)`` samples in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    writer = SampleShardWriter(str(directory), ShardLimit(samples=shard_samples))
    for i, (meta, pngs, *videos) in enumerate(samples):
        writer.write(sample_key(i), sample_members(meta, pngs, *videos))
    manifest = IngestManifest(
        num_samples=len(samples), num_images=sum(len(sample[1]) for sample in samples),
        kinds=dict(collections.Counter(sample[0].kind for sample in samples)), image_settings=ImageSettings(),
        shards=writer.close(), rejects={}, num_rejected=0, inputs=[],
        dedup=DedupSettings(kinds=[], near_dup_distance=None), png_compression=1, arguments={},
    )
    with open(os.path.join(directory, MANIFEST_NAME), "w") as file:
        file.write(manifest.to_json())
    return directory


def train_tokenizer(directory, *, without: tuple[str, ...] = ()):
    """The test tokenizer's tokenizer.json in ``directory``; ``without`` leaves special tokens out (as
    Qwen2.5-VL's tokenizer has no ``<think>`` / ``</think>``)."""
    tokenizer = train_bpe_tokenizer([" ".join(WORDS)] * 20 + ['[{"bbox_2d": [10, 20, 40, 50], "label": "cat"}]'] * 5,
                                    vocab_size=400)
    content = json.loads(json.dumps(tokenizer._content))
    content["added_tokens"] = [added for added in content["added_tokens"] if added["content"] not in without]
    content["model"]["vocab"] = {token: i for token, i in content["model"]["vocab"].items() if token not in without}
    HFTokenizer(content, path="<test>").save_hf(str(directory))
    return os.path.join(directory, "tokenizer.json")


def build_packed_dataset(root, samples=None, **options):
    """A tokenizer and a packed dataset of one small corpus (``samples``; by default ``make_samples``'s) under
    ``root``: (tokenizer path, packed dir)."""
    from data_prep.pack.command import PackOptions, pack

    tokenizer = train_tokenizer(root / "tokenizer")
    samples = make_samples(np.random.default_rng(0), 20) if samples is None else samples
    inputs = [str(write_sample_dataset(root / "input", samples))]
    settings = dict(seq_len=SEQ_LEN, window=40, shard_size=3, workers=1, **options)
    pack(PackOptions(inputs=inputs, tokenizer=tokenizer, out=str(root / "packed"), **settings), progress=False)
    return tokenizer, root / "packed"
