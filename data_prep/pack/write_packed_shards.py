"""Pack's second pass: one packed shard from its planned sequences of tokenized documents.

Document tokens come from the first pass's arrays, image and video frame bytes straight from the
sample shards (checked to be PNGs of the planned size, never decoded). Each finished shard is recorded in
``shards/packed-NNNNNN.json`` of the work directory (``ShardRecord``) with its checksum and token
counts, after the shard itself is in place, so a rerun skips exactly the shards that are complete.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from data_prep.pack.assemble_sequence import assemble_sequence
from data_prep.pack.document_tokens import Document
from data_prep.pack.packed_shard_writer import write_shard
from data_prep.pack.statistics import document_kind_stats
from data_prep.pack.tokenized_shard import TokenizedDocument, open_token_arrays
from data_prep.sample_shards.reader import read_span
from megatron_vl.config.serialization import config_from_dict
from megatron_vl.data.packed_format import DocumentSource, png_size, sample_key, shard_name
from megatron_vl.data.packed_manifest import KindStats, ShardEntry
from megatron_vl.files import write_atomically


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizedShardSource:
    """Where one tokenized shard's files are, and the sample shard it was made from."""

    prefix: str
    """Path prefix of its files (``tokenized_shard``)."""
    input: int
    """Position of the sample shard's dataset among pack's inputs."""
    shard: str
    """The sample shard's file name."""
    shard_path: str
    """The sample shard file (images and video frames are read from it)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteSettings:
    """What every write task of one pack shares."""

    out_dir: str
    """The packed dataset directory."""
    record_dir: str
    """Where the record of each finished shard goes."""
    tokenized_shards: list[TokenizedShardSource]
    """Every tokenized shard, by number."""
    seq_len: int
    """Tokens per packed sequence."""
    pad_id: int
    """Id of padding tokens and labels."""
    image_pad_id: int
    """``<|image_pad|>``: one per merged vision token of an image."""
    video_pad_id: int
    """``<|video_pad|>``: one per merged vision token of a video."""
    vision_start_id: int
    """``<|vision_start|>``: precedes each image's or video's placeholders."""
    patch_size: int
    """ViT patch side in pixels (image grid = pixels / patch_size)."""
    merge_size: int
    """Patches merged per side into one LLM token."""
    tokens_per_second: int
    """Temporal M-RoPE positions per second of video."""
    histogram_edges: list[int]
    """Document length buckets of the manifest's histogram."""
    first_shard_number: int = 0
    """Number (file name and sample keys) of shard 0; pack --partition I/N numbers its shards I, I + N, ..."""
    shard_number_step: int = 1
    """Step between the numbers of consecutive shards."""

    def shard_number(self, shard_index: int) -> int:
        return self.first_shard_number + self.shard_number_step * shard_index


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteTask:
    """One packed shard to write."""

    shard_index: int
    """Its number (packed-NNNNNN.tar)."""
    sequences: list[list[tuple[int, TokenizedDocument]]]
    """Per packed sequence, its documents as (tokenized shard number, the document)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardRecord:
    """A finished packed shard: its manifest entry and the counts the manifest sums."""

    entry: ShardEntry
    """Its entry in the manifest's shard list."""
    tokens_per_kind: dict[str, KindStats]
    """Token counts of its documents per data kind."""
    num_documents: int
    """Documents in it."""
    histogram_counts: list[int]
    """Its documents per length bucket (``WriteSettings.histogram_edges``)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShardRecord":
        return config_from_dict(cls, json.loads(text), where="a shard record")


_worker: dict = {}


def init_worker(settings: WriteSettings) -> None:
    _worker.clear()
    _worker.update(settings=settings, arrays={})


def record_path(record_dir: str, shard_index: int) -> str:
    return os.path.join(record_dir, shard_name(shard_index).removesuffix(".tar") + ".json")


def _token_arrays(number: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and loss flags of a tokenized shard, memory-mapped once per process."""
    arrays = _worker["arrays"]
    if number not in arrays:
        arrays[number] = open_token_arrays(_worker["settings"].tokenized_shards[number].prefix)
    return arrays[number]


def _load_document(
    number: int, planned: TokenizedDocument, files: dict
) -> tuple[Document, list[bytes], list[list[bytes]], DocumentSource]:
    """A planned document: its tokens from its tokenized shard, its images' and video frames' PNG bytes, its source."""
    source = _worker["settings"].tokenized_shards[number]
    tokens, loss = _token_arrays(number)
    start, end = planned.offset, planned.offset + planned.length
    document = Document(
        tokens=np.array(tokens[start:end]), loss=np.array(loss[start:end]), image_grids=planned.image_grids,
        image_refs=list(range(len(planned.image_grids))), kind=planned.kind, part=planned.part,
        video_grids=planned.video_grids, video_seconds=planned.video_seconds,
        video_refs=list(range(len(planned.video_grids))),
    )
    where = f"{source.shard_path} sample {planned.key}"
    images = [_read_png(files, source.shard_path, span, grid, where, "image")
              for span, grid in zip(planned.image_spans, planned.image_grids)]
    videos = [[_read_png(files, source.shard_path, span, grid, where, f"video {k} frame {j}")
               for j, span in enumerate(spans)]
              for k, (spans, grid) in enumerate(zip(planned.video_spans, planned.video_grids))]
    return document, images, videos, DocumentSource(input=source.input, shard=source.shard, key=planned.key)


def write_packed_shard(task: WriteTask) -> ShardRecord:
    """Write one packed shard; returns its record (manifest entry and token counts)."""
    settings: WriteSettings = _worker["settings"]
    stats: dict[str, KindStats] = {}
    lengths = []
    files: dict[str, object] = {}

    def samples():
        for number, sequence in enumerate(task.sequences):
            documents, images, videos, sources = [], [], [], []
            for shard_number, planned in sequence:
                document, document_images, document_videos, source = _load_document(shard_number, planned, files)
                documents.append(document)
                images += document_images
                videos += document_videos
                sources.append(source)
            sample = assemble_sequence(
                documents, images, videos, sources=sources, origins=[planned.origin for _, planned in sequence],
                seq_len=settings.seq_len, pad_id=settings.pad_id, image_pad_id=settings.image_pad_id,
                video_pad_id=settings.video_pad_id, vision_start_id=settings.vision_start_id,
                spatial_merge_size=settings.merge_size, tokens_per_second=settings.tokens_per_second,
            )
            for kind, counts in document_kind_stats(sample, settings.image_pad_id, settings.video_pad_id):
                stats[kind] = stats.get(kind, KindStats()) + counts
            lengths.extend(sample.seq_lens.tolist())
            yield sample_key(settings.shard_number(task.shard_index), number), sample

    try:
        entry = write_shard(os.path.join(settings.out_dir, shard_name(settings.shard_number(task.shard_index))), samples())
    finally:
        for file in files.values():
            file.close()
    counts, _ = np.histogram(lengths, bins=settings.histogram_edges)
    record = ShardRecord(
        entry=entry, tokens_per_kind=dict(sorted(stats.items())), num_documents=len(lengths),
        histogram_counts=counts.tolist(),
    )
    write_atomically(record_path(settings.record_dir, task.shard_index), record.to_json().encode())
    return record


def read_record(record_dir: str, shard_index: int) -> ShardRecord | None:
    path = record_path(record_dir, shard_index)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return ShardRecord.from_json(file.read())


def _read_png(
    files: dict, path: str, span: tuple[int, int], grid: tuple[int, int, int], where: str, what: str
) -> bytes:
    """The PNG bytes at ``span`` of the sample shard ``path``, checked to be a PNG of ``grid``'s size; ``where`` and
    ``what`` ("image", "video 0 frame 3") name it in errors."""
    settings: WriteSettings = _worker["settings"]
    if path not in files:
        files[path] = open(path, "rb")
    payload = read_span(files[path], span)
    size_in_header = png_size(payload)
    if len(payload) != span[1] or size_in_header is None:
        raise ValueError(f"{where}: the {what} member is not a PNG file; the shard is damaged, re-run ingest")
    expected = (grid[1] * settings.patch_size, grid[2] * settings.patch_size)
    if size_in_header != expected:
        raise ValueError(
            f"{where}: {what} is {size_in_header[0]}x{size_in_header[1]} pixels but its JSON says "
            f"{expected[0]}x{expected[1]}; re-run ingest"
        )
    return payload
