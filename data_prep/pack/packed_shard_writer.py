"""Writing the packed format (``megatron_vl.data.packed_format`` is its contract and reader).

A shard and its offsets index are each written atomically, the index first: a shard that exists
always has its index beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from data_prep.webdataset_tar import TarShardWriter
from megatron_vl.data.packed_format import ARRAY_MEMBERS, PackedSample, index_name, video_frame_member
from megatron_vl.data.packed_manifest import MANIFEST_NAME, PackedManifest, ShardEntry
from megatron_vl.files import write_atomically


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` file of ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def packed_sample_members(sample: PackedSample) -> dict[str, bytes]:
    """Member suffix -> bytes of one packed sample, in the order they go into the tar."""
    problems = sample.structure_problems()
    assert not problems, problems
    members = {name: npy_bytes(getattr(sample, name.removesuffix(".npy"))) for name in ARRAY_MEMBERS}
    meta = {
        "image_grid_thw": [list(map(int, grid)) for grid in sample.image_grid_thw],
        "documents": [dataclasses.asdict(document) for document in sample.documents],
        "num_padding": int(sample.num_padding),
        "video_grid_thw": [list(map(int, grid)) for grid in sample.video_grid_thw],
        "second_per_grid_ts": [float(seconds) for seconds in sample.second_per_grid_ts],
        "video_frames": [len(frames) for frames in sample.videos],
    }
    members["meta.json"] = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    for k, image in enumerate(sample.images):
        members[f"img{k}.png"] = image
    for k, frames in enumerate(sample.videos):
        for j, frame in enumerate(frames):
            members[video_frame_member(k, j)] = frame
    return members


def write_shard(path: str | Path, samples: Iterable[tuple[str, PackedSample]]) -> ShardEntry:
    """Write ``(key, sample)`` pairs as a shard plus its offsets index."""
    path = Path(path)
    offsets = []
    with TarShardWriter(path) as shard:
        for key, sample in samples:
            offsets.append(shard.offset)
            shard.add_sample(key, packed_sample_members(sample))
        offsets.append(shard.offset)
        index = npy_bytes(np.array(offsets, dtype="<i8"))
        write_atomically(path.with_name(index_name(path.name)), index)
    return ShardEntry(
        name=path.name,
        num_samples=len(offsets) - 1,
        bytes=shard.size,
        sha256=shard.sha256,
        index_sha256=hashlib.sha256(index).hexdigest(),
    )


def save_manifest(manifest: PackedManifest, directory: str | Path) -> None:
    """Write ``manifest.json`` into the dataset directory."""
    write_atomically(Path(directory) / MANIFEST_NAME, manifest.to_json().encode())
