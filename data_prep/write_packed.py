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
import struct
from collections import defaultdict

import numpy as np

from data_prep.documents import Document
from data_prep.sequences import assemble_sequence
from megatron_vl.data.packed_format import KindStats, ShardEntry, sample_key, shard_name, write_atomically, write_shard

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    pad_id: int
    image_pad_id: int
    vision_start_id: int
    patch_size: int
    merge_size: int
    histogram_edges: list[int]
    """Document length buckets of the manifest's histogram."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteTask:
    shard_index: int
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
                spill = settings.spills[spill_number]
                tokens, loss = _spill_arrays(spill_number)
                start, end = record["offset"], record["offset"] + record["length"]
                document = Document(
                    tokens=np.array(tokens[start:end]), loss=np.array(loss[start:end]),
                    image_grids=[tuple(grid) for grid in record["image_grids"]],
                    image_refs=list(range(len(record["image_grids"]))), kind=record["kind"],
                    part=tuple(record["part"]),
                )
                where = f"{spill['shard_path']} sample {record['key']}"
                for (offset, size), grid in zip(record["image_spans"], document.image_grids):
                    images.append(_read_png(files, spill["shard_path"], offset, size, grid, settings, where))
                provenance.append({
                    "kind": record["kind"],
                    "source": {"input": spill["input"], "shard": spill["shard"], "key": record["key"]},
                    "origin": record["origin"],
                    "part": record["part"],
                })
                documents.append(document)
                kind = stats[record["kind"]]
                kind.add(KindStats(
                    documents=1, tokens=len(document), images=len(document.image_grids),
                    image_tokens=int(np.sum(document.tokens == settings.image_pad_id)),
                    loss_tokens=int(document.loss[1:].sum()),
                ))
                lengths.append(len(document))
            yield sample_key(task.shard_index, number), assemble_sequence(
                documents, images, provenance, seq_len=settings.seq_len, pad_id=settings.pad_id,
                image_pad_id=settings.image_pad_id, vision_start_id=settings.vision_start_id,
                spatial_merge_size=settings.merge_size,
            )

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


def _read_png(files: dict, path: str, offset: int, size: int, grid, settings: WriteSettings, where: str) -> bytes:
    if path not in files:
        files[path] = open(path, "rb")
    file = files[path]
    file.seek(offset)
    payload = file.read(size)
    # The PNG header holds width then height (big-endian) right after the signature and IHDR tag.
    if len(payload) != size or payload[:8] != PNG_SIGNATURE or payload[12:16] != b"IHDR":
        raise ValueError(f"{where}: an image member is not a PNG file; the shard is damaged, re-run ingest")
    width, height = struct.unpack(">II", payload[16:24])
    expected = (grid[1] * settings.patch_size, grid[2] * settings.patch_size)
    if (height, width) != expected:
        raise ValueError(
            f"{where}: image is {height}x{width} pixels but its JSON says {expected[0]}x{expected[1]}; "
            "re-run ingest"
        )
    return payload
