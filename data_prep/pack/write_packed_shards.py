"""Pack's second pass: one packed shard from its planned sequences of tokenized documents.

Document tokens come from the first pass's arrays, image bytes straight from the sample shards
(checked to be PNGs of the planned size, never decoded). Each finished shard is recorded in
``shards/packed-NNNNNN.json`` of the work directory with its checksum and token counts, after
the shard itself is in place, so a rerun skips exactly the shards that are complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict

import numpy as np

from data_prep.pack.document_tokens import Document
from data_prep.sample_shards import read_span
from data_prep.pack.assemble_sequence import assemble_sequence
from data_prep.pack.packed_shard_writer import write_shard
from megatron_vl.data.packed_format import KindStats, ShardEntry, png_size, sample_key, shard_name
from megatron_vl.files import write_atomically


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteSettings:
    """What every write task of one pack shares."""

    out_dir: str
    """The packed dataset directory."""
    record_dir: str
    """Where the record of each finished shard goes."""
    spills: list[dict]
    """Per spill number: its path ``prefix`` and its sample shard's ``input``, ``shard``, ``shard_path``."""
    seq_len: int
    """Tokens per packed sequence."""
    pad_id: int
    """Id of padding tokens and labels."""
    image_pad_id: int
    """``<|image_pad|>``: one per merged vision token."""
    vision_start_id: int
    """``<|vision_start|>``: precedes each image's placeholders."""
    patch_size: int
    """ViT patch side in pixels (image grid = pixels / patch_size)."""
    merge_size: int
    """Patches merged per side into one LLM token."""
    histogram_edges: list[int]
    """Document length buckets of the manifest's histogram."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteTask:
    """One packed shard to write."""

    shard_index: int
    """Its number (packed-NNNNNN.tar)."""
    sequences: list[list[tuple[int, dict]]]
    """Per packed sequence, its documents as (spill number, the document's record in that spill)."""


_worker: dict = {}


def init_worker(settings: WriteSettings) -> None:
    _worker.clear()
    _worker.update(settings=settings, arrays={})


def record_path(record_dir: str, shard_index: int) -> str:
    return os.path.join(record_dir, shard_name(shard_index).removesuffix(".tar") + ".json")


def _spill_arrays(number: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and loss flags of a spill, memory-mapped once per process."""
    arrays = _worker["arrays"]
    if number not in arrays:
        prefix = _worker["settings"].spills[number]["prefix"]
        arrays[number] = (np.load(prefix + ".tokens.npy", mmap_mode="r"), np.load(prefix + ".loss.npy", mmap_mode="r"))
    return arrays[number]


def _load_document(spill_number: int, record: dict, files: dict) -> tuple[Document, list[bytes], dict]:
    """A planned document: its tokens from the spill, its images' PNG bytes, its provenance."""
    spill = _worker["settings"].spills[spill_number]
    tokens, loss = _spill_arrays(spill_number)
    start, end = record["offset"], record["offset"] + record["length"]
    grids = [tuple(grid) for grid in record["image_grids"]]
    document = Document(
        tokens=np.array(tokens[start:end]), loss=np.array(loss[start:end]), image_grids=grids,
        image_refs=list(range(len(grids))), kind=record["kind"], part=tuple(record["part"]),
    )
    where = f"{spill['shard_path']} sample {record['key']}"
    images = [_read_png(files, spill["shard_path"], offset, size, grid, where)
              for (offset, size), grid in zip(record["image_spans"], grids)]
    provenance = {
        "kind": record["kind"],
        "source": {"input": spill["input"], "shard": spill["shard"], "key": record["key"]},
        "origin": record["origin"],
        "part": record["part"],
    }
    return document, images, provenance


def write_packed_shard(task: WriteTask) -> dict:
    """Write one packed shard; returns its record (manifest entry and token counts)."""
    settings: WriteSettings = _worker["settings"]
    stats: dict[str, KindStats] = defaultdict(KindStats)
    lengths = []
    files: dict[str, object] = {}

    def samples():
        for number, sequence in enumerate(task.sequences):
            documents, images, provenance = [], [], []
            for spill_number, record in sequence:
                document, document_images, document_provenance = _load_document(spill_number, record, files)
                documents.append(document)
                images += document_images
                provenance.append(document_provenance)
            sample = assemble_sequence(
                documents, images, provenance, seq_len=settings.seq_len, pad_id=settings.pad_id,
                image_pad_id=settings.image_pad_id, vision_start_id=settings.vision_start_id,
                spatial_merge_size=settings.merge_size,
            )
            for document, record in zip(documents, sample.documents):
                stats[document.kind].add(KindStats(
                    documents=1, tokens=len(document), images=len(document.image_grids),
                    image_tokens=int(np.sum(document.tokens == settings.image_pad_id)),
                    loss_tokens=record["loss_tokens"],
                ))
                lengths.append(len(document))
            yield sample_key(task.shard_index, number), sample

    try:
        entry = write_shard(os.path.join(settings.out_dir, shard_name(task.shard_index)), samples())
    finally:
        for file in files.values():
            file.close()
    counts, _ = np.histogram(lengths, bins=settings.histogram_edges)
    record = {
        "entry": dataclasses.asdict(entry),
        "tokens_per_kind": {kind: dataclasses.asdict(value) for kind, value in sorted(stats.items())},
        "num_documents": len(lengths),
        "histogram_counts": counts.tolist(),
    }
    write_atomically(record_path(settings.record_dir, task.shard_index), json.dumps(record, sort_keys=True).encode())
    return {**record, "entry": entry}


def read_record(record_dir: str, shard_index: int) -> dict | None:
    path = record_path(record_dir, shard_index)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        record = json.load(file)
    record["entry"] = ShardEntry(**record["entry"])
    return record


def _read_png(files: dict, path: str, offset: int, size: int, grid, where: str) -> bytes:
    settings: WriteSettings = _worker["settings"]
    if path not in files:
        files[path] = open(path, "rb")
    payload = read_span(files[path], [offset, size])
    size_in_header = png_size(payload)
    if len(payload) != size or size_in_header is None:
        raise ValueError(f"{where}: an image member is not a PNG file; the shard is damaged, re-run ingest")
    expected = (grid[1] * settings.patch_size, grid[2] * settings.patch_size)
    if size_in_header != expected:
        raise ValueError(
            f"{where}: image is {size_in_header[0]}x{size_in_header[1]} pixels but its JSON says "
            f"{expected[0]}x{expected[1]}; re-run ingest"
        )
    return payload
