"""Sample shards on disk: what ``ingest`` writes and ``pack`` reads.

A sample-shard dataset is a directory of ``samples-000000.tar``, ``samples-000001.tar``, ...
(webdataset layout: uncompressed tar, members grouped by key) plus ``ingest_manifest.json``.
One sample is one document:

    {key}.json        {"kind", "source", "images": [{"height", "width", "orig_height",
                       "orig_width", "sha256"}], "segments": [...]}
    {key}.img{k}.png  image k, RGB, already resized to images[k] (lossless)

``images[k].height/width`` is the resized size (multiples of 28 by default), ``orig_*`` the size
of the source image after EXIF rotation and ``sha256`` the digest of the source image file. Keys
are the 9-digit running number of the sample in the dataset. Shards are reproducible byte for
byte (fixed member order, zero mtimes and owners) and appear atomically (written under a
temporary name, then renamed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tarfile
from collections.abc import Iterator

from data_prep.webdataset_tar import TarShardWriter, sample_size, tar_file_size


MANIFEST_NAME = "ingest_manifest.json"
FORMAT_VERSION = 1
SHARD_PATTERN = re.compile(r"samples-\d{6}\.tar")


def shard_name(index: int) -> str:
    return f"samples-{index:06d}.tar"


def sample_key(index: int) -> str:
    return f"{index:09d}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardLimit:
    """When a shard is full: after ``samples`` samples, or before it would pass ``bytes`` bytes."""

    samples: int | None = None
    """Most samples per shard (None: no limit)."""
    bytes: int | None = None
    """Most bytes per shard file, unless a single sample is larger (None: no limit)."""

    def __post_init__(self) -> None:
        if (self.samples is None) == (self.bytes is None):
            raise ValueError("a shard limit is either a sample count or a byte size")
        if (self.samples or self.bytes) < 1:
            raise ValueError(f"shard limit must be positive, got {self}")

    @classmethod
    def parse(cls, text: str) -> "ShardLimit":
        """``"1000"`` (samples) or a size such as ``"512MB"``, ``"1GiB"``, ``"64kB"`` (bytes)."""
        match = re.fullmatch(r"\s*(\d+)\s*([kKMGT]i?B)?\s*", text)
        if not match:
            raise ValueError(
                f"shard size {text!r} is neither a sample count (e.g. 1000) nor a byte size (e.g. 512MB, 1GiB)"
            )
        number, unit = int(match.group(1)), match.group(2)
        if unit is None:
            return cls(samples=number)
        power = "kMGT".index(unit[0].replace("K", "k")) + 1
        base = 1024 if "i" in unit else 1000
        return cls(bytes=number * base**power)


class SampleShardWriter:
    """Writes samples into consecutive shards of ``directory``, starting a new one at ``limit``."""

    def __init__(self, directory: str, limit: ShardLimit) -> None:
        self.directory = directory
        self.limit = limit
        self.shards: list[dict] = []
        """``{"name", "num_samples", "bytes", "sha256"}`` of every finished shard."""
        self._shard: TarShardWriter | None = None
        self._samples = self._bytes = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample: member suffix (``json``, ``img0.png``, ...) -> bytes, in that order."""
        size = sample_size(members)
        if self._shard is not None and (
            (self.limit.samples is not None and self._samples >= self.limit.samples)
            or (self.limit.bytes is not None and tar_file_size(self._bytes + size) > self.limit.bytes)
        ):
            self._finish_shard()
        if self._shard is None:
            self._shard = TarShardWriter(self._path())
            self._samples = self._bytes = 0
        self._shard.add_sample(key, members)
        self._samples += 1
        self._bytes += size

    def close(self) -> list[dict]:
        """Finish the last shard; returns the entries of all shards."""
        if self._shard is not None:
            self._finish_shard()
        return self.shards

    def _path(self) -> str:
        return os.path.join(self.directory, shard_name(len(self.shards)))

    def _finish_shard(self) -> None:
        path = self._path()
        self._shard.close()
        self.shards.append({
            "name": os.path.basename(path),
            "num_samples": self._samples,
            "bytes": self._shard.size,
            "sha256": self._shard.sha256,
        })
        self._shard = None


def image_member(k: int) -> str:
    """Member suffix of a sample's image ``k``."""
    return f"img{k}.png"


IMAGE_MEMBER = re.compile(r"img(\d+)\.png")


def sample_members(meta: dict, pngs: list[bytes]) -> dict[str, bytes]:
    """The tar members of one sample: its JSON, then its images in order."""
    members = {"json": json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")}
    for k, png in enumerate(pngs):
        members[image_member(k)] = png
    return members


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndexedSample:
    """One sample of a shard: its parsed JSON and where its images lie in the shard file."""

    key: str
    """Sample key inside the dataset."""
    meta: dict
    """The parsed ``{key}.json``: kind, source, images, segments."""
    image_spans: list[list[int]]
    """``[byte offset, size]`` of each image's PNG in the shard file, in order."""


def index_shard(path: str) -> Iterator[IndexedSample]:
    """The samples of one shard, in order, reading the JSON members only (images are skipped over,
    not read); a ValueError names the shard and key of a broken one."""
    key, meta, spans = None, None, {}
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            member_key, _, suffix = info.name.partition(".")
            if member_key != key and key is not None:
                yield _checked_sample(path, key, meta, spans)
                meta, spans = None, {}
            key = member_key
            if suffix == "json":
                meta = json.loads(tar.extractfile(info).read())
            elif match := IMAGE_MEMBER.fullmatch(suffix):
                spans[int(match.group(1))] = [info.offset_data, info.size]
            else:
                raise ValueError(f"{path}: unexpected member {info.name}; a sample has {key}.json and "
                                 f"{key}.img<k>.png members only. Re-run ingest")
    if key is not None:
        yield _checked_sample(path, key, meta, spans)


def _checked_sample(path: str, key: str, meta: dict | None, spans: dict[int, list[int]]) -> IndexedSample:
    if meta is None:
        raise ValueError(f"{path}: sample {key} has no {key}.json member; re-run ingest")
    count = len(meta.get("images", []))
    if sorted(spans) != list(range(count)):
        raise ValueError(
            f"{path}: sample {key} has image members {sorted(spans)} but its JSON lists {count} images; re-run ingest"
        )
    return IndexedSample(key=key, meta=meta, image_spans=[spans[k] for k in range(count)])


def read_span(file, span: list[int]) -> bytes:
    """The bytes of one member of an open shard file, from its ``[byte offset, size]``."""
    offset, size = span
    file.seek(offset)
    return file.read(size)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleRecord:
    """One sample as read back from a shard."""

    key: str
    """Sample key inside the dataset."""
    meta: dict
    """The parsed ``{key}.json``: kind, source, images, segments."""
    images: list[bytes]
    """PNG bytes of each image, in order (``images[k]`` is ``{key}.img{k}.png``)."""


def iter_shard(path: str) -> Iterator[SampleRecord]:
    """The samples of one shard with their images' bytes, in order."""
    with open(path, "rb") as file:
        for sample in index_shard(path):
            images = [read_span(file, span) for span in sample.image_spans]
            yield SampleRecord(key=sample.key, meta=sample.meta, images=images)


def load_manifest(directory: str) -> dict:
    """``ingest_manifest.json`` of a sample-shard dataset, after checking its version and shards."""
    path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist: {directory} is not a finished ingest output; run ingest")
    with open(path, encoding="utf-8") as file:
        manifest = json.load(file)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {manifest.get('format_version')}, this megatron-vl reads "
            f"{FORMAT_VERSION}; re-run ingest"
        )
    for shard in manifest["shards"]:
        if not SHARD_PATTERN.fullmatch(shard["name"]):
            raise ValueError(f"{path} lists a shard named {shard['name']!r}, not samples-NNNNNN.tar")
    return manifest


def iter_dataset(directory: str) -> Iterator[tuple[str, SampleRecord]]:
    """``(shard name, sample)`` of every sample of a sample-shard dataset, in order."""
    for shard in load_manifest(directory)["shards"]:
        for record in iter_shard(os.path.join(directory, shard["name"])):
            yield shard["name"], record
