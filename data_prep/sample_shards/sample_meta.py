"""One sample of a sample shard: its ``{key}.json`` (kind, source, images, segments) and its tar members."""

from __future__ import annotations

import dataclasses
import json
import re

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.config.validation import one_of, positive_int, positive_number

KINDS = ("caption", "interleaved", "ocr", "grounding", "cot", "text", "video_caption", "video_grounding", "gui")
IMAGE_MEMBER = re.compile(r"img(\d+)\.png")
VIDEO_FRAME_MEMBER = re.compile(r"vid(\d+)\.(\d+)\.png")


def sample_key(index: int) -> str:
    """Key of the sample at running number ``index`` of a dataset."""
    return f"{index:09d}"


def image_member(k: int) -> str:
    """Member suffix of a sample's image ``k``."""
    return f"img{k}.png"


def video_frame_member(k: int, j: int) -> str:
    """Member suffix of frame ``j`` of a sample's video ``k``."""
    return f"vid{k}.{j:05d}.png"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleImage:
    """One image of a sample, as its JSON lists it."""

    height: int
    """Height of the stored (resized) image in pixels."""
    width: int
    """Width of the stored (resized) image in pixels."""
    orig_height: int
    """Height of the source image after EXIF rotation."""
    orig_width: int
    """Width of the source image after EXIF rotation."""
    sha256: str
    """sha256 of the source image file."""

    def __post_init__(self) -> None:
        for field in ("height", "width", "orig_height", "orig_width"):
            positive_int("SampleImage", field, getattr(self, field))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleVideo:
    """One video of a sample, as its JSON lists it: the frames kept from the source, all resized to one size."""

    num_frames: int
    """Frames stored (members ``vid{k}.00000.png``, ...); the loader repeats the last to fill a temporal patch."""
    height: int
    """Height of every stored frame in pixels."""
    width: int
    """Width of every stored frame in pixels."""
    orig_height: int
    """Height of the source frames."""
    orig_width: int
    """Width of the source frames."""
    fps: float
    """Frames per second of the stored frames (transformers' ``sampled_fps``); ``second_per_grid_t`` follows."""
    duration: float
    """Length of the source video in seconds."""
    sha256: str
    """sha256 of the source video file (of the frame files in order, for a frame folder)."""

    def __post_init__(self) -> None:
        for field in ("num_frames", "height", "width", "orig_height", "orig_width"):
            positive_int("SampleVideo", field, getattr(self, field))
        positive_number("SampleVideo", "fps", self.fps)
        positive_number("SampleVideo", "duration", self.duration)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleMeta:
    """The ``{key}.json`` of a sample: one document of one data kind."""

    kind: str
    """One of ``KINDS``."""
    source: dict
    """Where the document came from: ``{"file", "line"}`` (JSONL) or ``{"tar", "key"}`` (webdataset)."""
    images: list[SampleImage]
    """Its images in document order; image k is the member ``{key}.img{k}.png``."""
    segments: list[dict]
    """The document in order: ``{"text", "loss"}``, ``{"special", "loss"}``, ``{"image": k}`` or ``{"video": k}``."""
    videos: list[SampleVideo] = dataclasses.field(default_factory=list)
    """Its videos in document order; frame j of video k is the member ``{key}.vid{k}.{j:05d}.png``."""

    def __post_init__(self) -> None:
        one_of("SampleMeta", "kind", self.kind, KINDS)
        if not isinstance(self.source, dict):
            raise ValueError(f"SampleMeta.source must be an object, got {self.source!r}")
        segments = self.segments
        if not isinstance(segments, list) or not segments or not all(isinstance(s, dict) for s in segments):
            raise ValueError(f"SampleMeta.segments must be a non-empty list of objects, got {segments!r}")

    def to_json(self) -> bytes:
        values = dataclasses.asdict(self)
        if not values["videos"]:
            del values["videos"]  # samples without videos keep the JSON they had before videos existed
        return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> "SampleMeta":
        """Parse a ``{key}.json``; a ValueError names the sample (``where``) and the fix."""
        try:
            return config_from_dict(cls, json.loads(data), where="its JSON")
        except ValueError as error:  # json.JSONDecodeError included
            raise ValueError(f"{where}: {error}; re-run ingest on its source") from None


def sample_members(meta: SampleMeta, pngs: list[bytes], video_pngs: list[list[bytes]] = ()) -> dict[str, bytes]:
    """The tar members of one sample: its JSON, then its images in order, then each video's frames in order."""
    members = {"json": meta.to_json()}
    for k, png in enumerate(pngs):
        members[image_member(k)] = png
    for k, frames in enumerate(video_pngs):
        for j, png in enumerate(frames):
            members[video_frame_member(k, j)] = png
    return members
