"""``ingest_manifest.json``: what a sample-shard dataset holds and how ingest made it."""

from __future__ import annotations

import dataclasses
import json
import os
import re

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.config.validation import non_negative_int, positive_int
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.videos import VideoSettings

MANIFEST_NAME = "ingest_manifest.json"
IMAGE_HASHES_NAME = "image_hashes.jsonl"
"""A partition's deduplicable samples and their image hashes, one JSON line each (read by dedup-plan)."""
FORMAT_VERSION = 1
SHARD_PATTERN = re.compile(r"samples-\d{6}\.tar")


def shard_name(index: int) -> str:
    return f"samples-{index:06d}.tar"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleShardEntry:
    """One finished sample shard."""

    name: str
    """File name inside the dataset directory (``samples-NNNNNN.tar``)."""
    num_samples: int
    """Samples (documents) in it."""
    bytes: int
    """Size of the file."""
    sha256: str
    """sha256 of the file."""

    def __post_init__(self) -> None:
        if not SHARD_PATTERN.fullmatch(self.name):
            raise ValueError(f"shard name {self.name!r} is not samples-NNNNNN.tar")
        positive_int(f"shard {self.name}", "num_samples", self.num_samples)
        positive_int(f"shard {self.name}", "bytes", self.bytes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InputDocuments:
    """One input file of an ingest run and how many documents it held."""

    path: str
    """The JSONL or tar file, URL or ``pipe:`` command, as given, expanded or found under a given directory
    (URLs without user, password and query)."""
    documents: int
    """Documents read from it, accepted or rejected."""
    unreadable: str | None = None
    """Why it could not be read to its end after all retries (None: read completely); see the reject log."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DedupSettings:
    """Which documents ingest dropped as duplicates."""

    kinds: list[str]
    """Kinds whose documents are dropped when all their images were already ingested."""
    near_dup_distance: int | None
    """Largest perceptual-hash distance counted as the same picture (None: exact duplicates only)."""
    pending: bool = False
    """A partition's output whose duplicates are not dropped yet (``dedup-plan`` and ``dedup-apply`` drop
    them as one process over all partitions would); pack and merge refuse it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class IngestManifest:
    """``ingest_manifest.json``: the shards of a sample-shard dataset, its counts and its settings."""

    format_version: int = FORMAT_VERSION
    """Version of the sample-shard layout; readers refuse versions they do not know."""
    num_samples: int
    """Samples in all shards."""
    num_images: int
    """Images in all samples."""
    kinds: dict[str, int]
    """Samples per data kind (kinds without samples left out)."""
    image_settings: ImageSettings
    """How the images were resized."""
    video_settings: VideoSettings = VideoSettings()
    """How the videos were sampled and resized (manifests written before videos existed read as the defaults)."""
    shards: list[SampleShardEntry]
    """The shards, in order."""
    rejects: dict[str, int]
    """Reject-log entries per reason (see ``RejectReason``): rejected documents, and ``unreadable_shard``
    inputs."""
    num_rejected: int
    """Reject-log entries in all."""
    inputs: list[InputDocuments]
    """The input files, in the order they were read."""
    dedup: DedupSettings
    """The duplicate detection applied."""
    png_compression: int
    """zlib level of the stored PNGs."""
    arguments: dict
    """The ingest command line as parsed, defaults included."""

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format version {self.format_version}, this megatron-vl reads {FORMAT_VERSION}")
        for name in ("num_samples", "num_images", "num_rejected"):
            non_negative_int("IngestManifest", name, getattr(self, name))
        if self.num_samples != sum(shard.num_samples for shard in self.shards):
            raise ValueError(f"num_samples {self.num_samples} is not the sum of its shards' sample counts")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "IngestManifest":
        return config_from_dict(cls, json.loads(text), where="the manifest")


def load_manifest(directory: str) -> IngestManifest:
    """``ingest_manifest.json`` of a sample-shard dataset, checked."""
    path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist: {directory} is not a finished ingest output; run ingest")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        return IngestManifest.from_json(text)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}; re-run ingest") from None
