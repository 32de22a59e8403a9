"""What an ingest worker does with one input document: parse it, load and resize its images and
videos, write its boxes, points and GUI actions in resized coordinates, check its spans against its
videos, and encode the sample (or say why it is rejected)."""

from __future__ import annotations

import dataclasses
import hashlib

import torch

from data_prep.ingest.gui_actions import render_gui
from data_prep.ingest.image_dedup import perceptual_hash
from data_prep.ingest.png_writer import encode_png
from data_prep.ingest.raw_schema import (
    RawDocument, RejectError, parse_document, parse_record, render_boxes, render_spans,
)
from data_prep.ingest.raw_sources import WorkItem, webdataset_record
from data_prep.ingest.rejects import Reject, RejectReason
from data_prep.ingest.video_frames import store_video
from data_prep.sample_shards.sample_meta import KINDS, SampleImage, SampleMeta
from megatron_vl.config.validation import one_of
from megatron_vl.data.images import ImageSettings, load_image, resize_image, smart_resize
from megatron_vl.data.videos import VideoSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """What every worker needs to turn raw documents into samples."""

    image_settings: ImageSettings
    """Resize limits and patch geometry."""
    default_kind: str | None
    """Kind of records without a ``kind`` field (``--kind``)."""
    png_compression: int
    """zlib level (0-9) of the stored PNGs: lower is faster, higher is smaller."""
    perceptual_hashes: bool
    """Compute perceptual hashes (for ``--near-dup``)."""
    video_settings: VideoSettings = VideoSettings()
    """Frame sampling, resize limits and length limit of videos."""

    def __post_init__(self) -> None:
        one_of("BuildSettings", "png_compression", self.png_compression, range(10))
        one_of("BuildSettings", "default_kind", self.default_kind, (None, *KINDS))
        if not isinstance(self.video_settings, VideoSettings):
            raise ValueError("BuildSettings.video_settings must be a VideoSettings (megatron_vl.data.videos)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuiltSample:
    """An accepted document, ready to be written (its key is given when it is)."""

    meta: SampleMeta
    """The sample's JSON."""
    pngs: list[bytes]
    """Its images, resized, as PNG."""
    sha256s: list[str]
    """sha256 of each source image file (exact dedup)."""
    phashes: list[int]
    """Perceptual hash of each image (near dedup; empty unless asked for)."""
    video_pngs: list[list[bytes]] = dataclasses.field(default_factory=list)
    """Each video's kept frames, resized, as PNG (videos are not deduplicated: their hashes are not in ``sha256s``)."""


def build_sample(document: RawDocument, item: WorkItem, settings: BuildSettings) -> BuiltSample:
    """Load the document's images and videos and finish its segments; raises RejectError."""
    images, pngs, sha256s, phashes, sizes = [], [], [], [], []
    for reference in document.images:
        data = item.read_image(reference)
        try:
            picture = load_image(data)
        except Exception as error:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
            raise RejectError(
                RejectReason.UNREADABLE_IMAGE, f"image {reference}: cannot decode ({type(error).__name__}: {error})"
            ) from None
        try:
            smart_resize(picture.height, picture.width, settings.image_settings)
        except ValueError as error:
            raise RejectError(RejectReason.BAD_ASPECT_RATIO, f"image {reference}: {error}") from None
        pixels = resize_image(picture, settings.image_settings)
        pngs.append(encode_png(pixels, settings.png_compression))
        sha256s.append(hashlib.sha256(data).hexdigest())
        if settings.perceptual_hashes:
            phashes.append(perceptual_hash(pixels))
        sizes.append(((picture.height, picture.width), pixels.shape[:2]))
        images.append(SampleImage(
            height=pixels.shape[0], width=pixels.shape[1],
            orig_height=picture.height, orig_width=picture.width, sha256=sha256s[-1],
        ))
    videos = [store_video(reference, item, settings.video_settings, settings.png_compression)
              for reference in document.videos]
    segments = []
    for segment in document.segments:
        if "boxes" in segment:
            original, resized = sizes[segment["image"]]
            segment = {"text": render_boxes(segment, original, resized), "loss": segment["loss"]}
        elif "gui" in segment:
            original, resized = sizes[segment["image"]]
            segment = {"text": render_gui(segment, original, resized), "loss": segment["loss"]}
        elif "spans" in segment:
            segment = {"text": render_spans(segment, videos[segment["video"]].meta.duration), "loss": segment["loss"]}
        segments.append(segment)
    meta = SampleMeta(kind=document.kind, source=item.source, images=images, segments=segments,
                      videos=[video.meta for video in videos])
    return BuiltSample(meta=meta, pngs=pngs, sha256s=sha256s, phashes=phashes,
                       video_pngs=[video.pngs for video in videos])


_settings: BuildSettings | None = None


def init_worker(settings: BuildSettings) -> None:
    """Pool initializer: the settings every ``process_item`` call in this process uses."""
    global _settings
    _settings = settings
    # One worker per core: torch's own threads (video frame resizing) would only compete with the other
    # workers, and a forked worker that inherits a parent's busy thread pool can wait on it forever.
    torch.set_num_threads(1)


def process_item(item: WorkItem) -> BuiltSample | Reject:
    """One document in, one sample or one reject out (never an exception for bad data)."""
    if item.unreadable is not None:
        return Reject(source=item.source, reason=RejectReason.UNREADABLE_SHARD, detail=item.unreadable)
    try:
        if item.members is None:
            document = parse_record(item.record, _settings.default_kind)
        else:
            document = parse_document(webdataset_record(item.members, _settings.default_kind), _settings.default_kind)
        return build_sample(document, item, _settings)
    except RejectError as error:
        return Reject(source=item.source, reason=error.reason, detail=error.detail)
