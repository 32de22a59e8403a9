"""The tokenized shard: what pack's first pass writes for one sample shard and its second pass reads.

For sample shard ``samples-000003.tar`` of input 1, under the work directory's ``tokenized/``:
``001-samples-000003.tokens.npy`` (int32, the tokens of all its documents back to back),
``.loss.npy`` (uint8, the loss flag of each token) and, last, ``.docs.json`` (``TokenizedShard``:
where each document lies in those arrays, its kind, provenance and where its images and video frames
lie inside the sample shard). The ``.docs.json`` is the mark that the shard is done: a rerun skips shards that
have one.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.files import atomic_file, write_atomically


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizedDocument:
    """One document (or part of a split one) of a tokenized sample shard: where its tokens, images and videos are."""

    key: str
    """Its sample's key in the sample shard."""
    kind: str
    """Its sample's data kind."""
    origin: dict
    """Its sample's ``source`` (where ingest read the document)."""
    part: tuple[int, int]
    """(i, n): part i of the n parts of its sample; (1, 1) when whole."""
    offset: int
    """Where its tokens start in the shard's token and loss arrays."""
    length: int
    """Its tokens."""
    image_grids: list[tuple[int, int, int]]
    """(t, h, w) in patches of each of its images, in order."""
    image_spans: list[tuple[int, int]]
    """``(byte offset, size)`` of each of its images' PNG in the sample shard."""
    video_grids: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    """(t, h, w) in patches of each of its videos, in order."""
    video_seconds: list[float] = dataclasses.field(default_factory=list)
    """Seconds one temporal patch of each of its videos spans."""
    video_spans: list[list[tuple[int, int]]] = dataclasses.field(default_factory=list)
    """Per video, ``(byte offset, size)`` of each of its frames' PNG in the sample shard."""

    @classmethod
    def from_dict(cls, values) -> "TokenizedDocument":
        return config_from_dict(cls, values, where="a tokenized document")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizedShard:
    """The ``.docs.json`` of one tokenized sample shard: its documents and counts."""

    input: int
    """Position of its dataset among pack's inputs."""
    shard: str
    """The sample shard's file name."""
    shard_path: str
    """The sample shard file."""
    samples: int
    """Samples read."""
    split_documents: int
    """Samples longer than seq_len split into parts."""
    dropped: dict[str, int]
    """Samples not packed, by reason."""
    documents: list[TokenizedDocument]
    """The documents to pack, in order."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TokenizedShard":
        return config_from_dict(cls, json.loads(text), where="a tokenized shard")


def tokenized_shard_done(prefix: str) -> bool:
    return os.path.exists(prefix + ".docs.json")


def load_tokenized_shard(prefix: str) -> TokenizedShard:
    with open(prefix + ".docs.json", encoding="utf-8") as file:
        return TokenizedShard.from_json(file.read())


def save_tokenized_shard(
    prefix: str, shard: TokenizedShard, token_parts: list[np.ndarray], loss_parts: list[np.ndarray]
) -> None:
    """Write the token and loss arrays (the documents' parts back to back), then the ``.docs.json``."""
    for suffix, parts, dtype in ((".tokens.npy", token_parts, np.int32), (".loss.npy", loss_parts, np.uint8)):
        array = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
        with atomic_file(prefix + suffix) as file:
            np.save(file, array.astype(dtype, copy=False), allow_pickle=False)
    write_atomically(prefix + ".docs.json", shard.to_json().encode())


def open_token_arrays(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """The token and loss arrays of a tokenized shard, memory-mapped."""
    return np.load(prefix + ".tokens.npy", mmap_mode="r"), np.load(prefix + ".loss.npy", mmap_mode="r")
