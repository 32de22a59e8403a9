"""Reading sample shards: each sample's JSON and where its images and video frames lie, or their bytes too."""

from __future__ import annotations

import dataclasses
import os
import tarfile
from collections.abc import Iterator

from data_prep.sample_shards.manifest import load_manifest
from data_prep.sample_shards.sample_meta import IMAGE_MEMBER, VIDEO_FRAME_MEMBER, SampleMeta


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndexedSample:
    """One sample of a shard: its parsed JSON and where its images and video frames lie in the shard file."""

    key: str
    """Sample key inside the dataset."""
    meta: SampleMeta
    """Its ``{key}.json``."""
    image_spans: list[tuple[int, int]]
    """``(byte offset, size)`` of each image's PNG in the shard file, in order."""
    video_spans: list[list[tuple[int, int]]] = dataclasses.field(default_factory=list)
    """Per video, ``(byte offset, size)`` of each of its frames' PNG in the shard file, in order."""


def index_shard(path: str) -> Iterator[IndexedSample]:
    """The samples of one shard, in order, reading the JSON members only (images and frames are skipped
    over, not read); a ValueError names the shard and key of a broken one."""
    key, meta, spans, frames = None, None, {}, {}
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            member_key, _, suffix = info.name.partition(".")
            if member_key != key and key is not None:
                yield _checked_sample(path, key, meta, spans, frames)
                meta, spans, frames = None, {}, {}
            key = member_key
            if suffix == "json":
                meta = SampleMeta.from_json(tar.extractfile(info).read(), where=f"{path}: sample {key}")
            elif match := IMAGE_MEMBER.fullmatch(suffix):
                spans[int(match.group(1))] = (info.offset_data, info.size)
            elif match := VIDEO_FRAME_MEMBER.fullmatch(suffix):
                frames[int(match.group(1)), int(match.group(2))] = (info.offset_data, info.size)
            else:
                raise ValueError(f"{path}: unexpected member {info.name}; a sample has {key}.json, "
                                 f"{key}.img<k>.png and {key}.vid<k>.<j>.png members only. Re-run ingest")
    if key is not None:
        yield _checked_sample(path, key, meta, spans, frames)


def _checked_sample(
    path: str, key: str, meta: SampleMeta | None, spans: dict[int, tuple[int, int]],
    frames: dict[tuple[int, int], tuple[int, int]],
) -> IndexedSample:
    if meta is None:
        raise ValueError(f"{path}: sample {key} has no {key}.json member; re-run ingest")
    count = len(meta.images)
    if sorted(spans) != list(range(count)):
        raise ValueError(
            f"{path}: sample {key} has image members {sorted(spans)} but its JSON lists {count} images; re-run ingest"
        )
    expected = [(k, j) for k, video in enumerate(meta.videos) for j in range(video.num_frames)]
    if sorted(frames) != expected:
        raise ValueError(
            f"{path}: sample {key} has video frame members {sorted(frames)} but its JSON lists videos of "
            f"{[video.num_frames for video in meta.videos]} frames; re-run ingest"
        )
    return IndexedSample(
        key=key, meta=meta, image_spans=[spans[k] for k in range(count)],
        video_spans=[[frames[k, j] for j in range(video.num_frames)] for k, video in enumerate(meta.videos)],
    )


def read_span(file, span: tuple[int, int]) -> bytes:
    """The bytes of one member of an open shard file, from its ``(byte offset, size)``."""
    offset, size = span
    file.seek(offset)
    return file.read(size)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleRecord:
    """One sample as read back from a shard."""

    key: str
    """Sample key inside the dataset."""
    meta: SampleMeta
    """Its ``{key}.json``."""
    images: list[bytes]
    """PNG bytes of each image, in order (``images[k]`` is ``{key}.img{k}.png``)."""
    videos: list[list[bytes]] = dataclasses.field(default_factory=list)
    """PNG bytes of each video's frames, in order (``videos[k][j]`` is ``{key}.vid{k}.{j:05d}.png``)."""


def iter_shard(path: str) -> Iterator[SampleRecord]:
    """The samples of one shard with their images' and video frames' bytes, in order."""
    with open(path, "rb") as file:
        for sample in index_shard(path):
            images = [read_span(file, span) for span in sample.image_spans]
            videos = [[read_span(file, span) for span in spans] for spans in sample.video_spans]
            yield SampleRecord(key=sample.key, meta=sample.meta, images=images, videos=videos)


def iter_dataset(directory: str) -> Iterator[tuple[str, SampleRecord]]:
    """``(shard name, sample)`` of every sample of a sample-shard dataset, in order."""
    for shard in load_manifest(directory).shards:
        for record in iter_shard(os.path.join(directory, shard.name)):
            yield shard.name, record
