"""One sample of a sample shard: its ``{key}.json`` (kind, source, images, segments) and its tar members."""

from __future__ import annotations

import dataclasses
import json
import re

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.config.validation import one_of, positive_int

KINDS = ("caption", "interleaved", "ocr", "grounding", "cot", "text")
IMAGE_MEMBER = re.compile(r"img(\d+)\.png")


def sample_key(index: int) -> str:
    """Key of the sample at running number ``index`` of a dataset."""
    return f"{index:09d}"


def image_member(k: int) -> str:
    """Member suffix of a sample's image ``k``."""
    return f"img{k}.png"


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
class SampleMeta:
    """The ``{key}.json`` of a sample: one document of one data kind."""

    kind: str
    """One of ``KINDS``."""
    source: dict
    """Where the document came from: ``{"file", "line"}`` (JSONL) or ``{"tar", "key"}`` (webdataset)."""
    images: list[SampleImage]
    """Its images in document order; image k is the member ``{key}.img{k}.png``."""
    segments: list[dict]
    """The document in order: ``{"text", "loss"}``, ``{"special", "loss"}`` or ``{"image": k}``."""

    def __post_init__(self) -> None:
        one_of("SampleMeta", "kind", self.kind, KINDS)
        if not isinstance(self.source, dict):
            raise ValueError(f"SampleMeta.source must be an object, got {self.source!r}")
        segments = self.segments
        if not isinstance(segments, list) or not segments or not all(isinstance(s, dict) for s in segments):
            raise ValueError(f"SampleMeta.segments must be a non-empty list of objects, got {segments!r}")

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> "SampleMeta":
        """Parse a ``{key}.json``; a ValueError names the sample (``where``) and the fix."""
        try:
            return config_from_dict(cls, json.loads(data), where="its JSON")
        except ValueError as error:  # json.JSONDecodeError included
            raise ValueError(f"{where}: {error}; re-run ingest on its source") from None


def sample_members(meta: SampleMeta, pngs: list[bytes]) -> dict[str, bytes]:
    """The tar members of one sample: its JSON, then its images in order."""
    members = {"json": meta.to_json()}
    for k, png in enumerate(pngs):
        members[image_member(k)] = png
    return members
