"""A document's video as a sample stores it: the kept frames, resized to one size, as PNGs, and its
``SampleVideo`` entry.

A video file is sampled as transformers' video processor samples it (``sample_frame_indices`` of the
decoded frame count and the stream's average frame rate). The count the container claims picks the
frames on the first decoding pass; when decoding finds another count (or the container claims none), a
second pass samples with the decoded count, so the frames kept never depend on a wrong header. Only
the kept frames are converted, resized and encoded, one at a time: a long video never sits in memory.

Frames of a frame list or folder were sampled already, at the reference's ``fps``: all are kept.

Length: a video longer than ``max_seconds`` (a frame folder with more than ``max_frames`` frames) is
refused as ``video_too_long``, never cut, so no caption or span ever describes footage that was dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from data_prep.ingest.png_writer import encode_png
from data_prep.ingest.raw_schema import VideoReference
from data_prep.ingest.raw_sources import WorkItem
from data_prep.ingest.rejects import RejectError, RejectReason
from data_prep.ingest.video_decoding import decode_frames, stream_info
from data_prep.sample_shards.sample_meta import SampleVideo
from megatron_vl.data.images import load_image
from megatron_vl.data.videos import (
    VideoSettings, resize_frames, sample_frame_indices, sampled_fps, video_frame_size,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredVideo:
    """One video of a sample: its JSON entry and its frames."""

    meta: SampleVideo
    """Its ``SampleVideo`` entry."""
    pngs: list[bytes]
    """The kept frames, resized, as PNG, in order."""


def store_video(
    reference: VideoReference, item: WorkItem, settings: VideoSettings, png_compression: int,
) -> StoredVideo:
    """Load, sample, resize and encode a referenced video; raises RejectError."""
    if reference.is_file:
        return _store_file(item.read_video(reference.source), reference.source, settings, png_compression)
    names = item.list_frames(reference.source) if reference.is_folder else list(reference.source)
    return _store_frames(names, item, reference, settings, png_compression)


def _store_file(data: bytes, name: str, settings: VideoSettings, png_compression: int) -> StoredVideo:
    info = stream_info(data, name)
    _check_seconds(info.claimed_seconds, name, settings)
    total, pngs, size = _sample_pass(data, name, info.claimed_frames, info.fps, settings, png_compression)
    if total != info.claimed_frames:
        decoded, pngs, size = _sample_pass(data, name, total, info.fps, settings, png_compression)
        assert decoded == total, (name, decoded, total)
    _check_seconds(total / info.fps, name, settings)
    (orig_height, orig_width), (height, width) = size
    meta = SampleVideo(
        num_frames=len(pngs), height=height, width=width, orig_height=orig_height, orig_width=orig_width,
        fps=sampled_fps(len(pngs), total, info.fps), duration=total / info.fps,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return StoredVideo(meta=meta, pngs=pngs)


def _sample_pass(
    data: bytes, name: str, total: int, fps: float, settings: VideoSettings, png_compression: int,
) -> tuple[int, list[bytes], tuple[tuple[int, int], tuple[int, int]]]:
    """Decode the whole stream once, keeping the frames ``sample_frame_indices(total, ...)`` picks (none
    when ``total`` is below one temporal patch, e.g. 0 for unknown): the decoded frame count, the kept
    frames as PNG, and the original and resized (height, width)."""
    kept = set(sample_frame_indices(total, fps, settings)) if total >= settings.temporal_patch_size else set()
    encoder = _FrameEncoder(len(kept), name, settings, png_compression)
    decoded = 0
    for index, frame in decode_frames(data, name, kept.__contains__):
        decoded = index + 1
        if frame is not None:
            encoder.add(frame, f"frame {index}")
    if decoded < settings.temporal_patch_size:
        raise RejectError(RejectReason.NO_VIDEO_FRAMES, f"video {name}: {decoded} decodable frames, "
                                                        f"at least {settings.temporal_patch_size} are needed")
    return decoded, encoder.pngs, encoder.sizes


def _store_frames(
    names: list[str], item: WorkItem, reference: VideoReference, settings: VideoSettings, png_compression: int,
) -> StoredVideo:
    where = reference.source if isinstance(reference.source, str) else f"frame list {names[0]}, ..."
    if len(names) < settings.temporal_patch_size:
        raise RejectError(RejectReason.NO_VIDEO_FRAMES, f"video {where}: {len(names)} frames, "
                                                        f"at least {settings.temporal_patch_size} are needed")
    if len(names) > settings.max_frames:
        raise RejectError(RejectReason.VIDEO_TOO_LONG,
                          f"video {where}: {len(names)} frames, more than --video-max-frames {settings.max_frames}; "
                          "sample it more sparsely")
    _check_seconds(len(names) / reference.fps, where, settings)
    encoder = _FrameEncoder(len(names), where, settings, png_compression)
    digest = hashlib.sha256()
    for name in names:
        data = item.read_video(name)
        digest.update(data)
        try:
            picture = load_image(data)
        except Exception as error:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
            raise RejectError(
                RejectReason.UNREADABLE_VIDEO,
                f"video {where}: frame {name} cannot be decoded ({type(error).__name__}: {error})",
            ) from None
        encoder.add(np.array(picture), f"frame {name}")
    (orig_height, orig_width), (height, width) = encoder.sizes
    meta = SampleVideo(
        num_frames=len(names), height=height, width=width, orig_height=orig_height, orig_width=orig_width,
        fps=reference.fps, duration=len(names) / reference.fps, sha256=digest.hexdigest(),
    )
    return StoredVideo(meta=meta, pngs=encoder.pngs)


def _check_seconds(seconds: float, where: str, settings: VideoSettings) -> None:
    if seconds > settings.max_seconds:
        raise RejectError(RejectReason.VIDEO_TOO_LONG,
                          f"video {where}: {seconds:.1f} seconds, longer than --video-max-seconds "
                          f"{settings.max_seconds:g} (refused, not cut)")


class _FrameEncoder:
    """Resizes the kept frames of one video to the size of its first one's and encodes them as PNG."""

    def __init__(self, num_frames: int, where: str, settings: VideoSettings, png_compression: int) -> None:
        self.num_frames, self.where, self.settings, self.png_compression = num_frames, where, settings, png_compression
        self.pngs: list[bytes] = []
        self.sizes: tuple[tuple[int, int], tuple[int, int]] | None = None

    def add(self, frame: np.ndarray, label: str) -> None:
        original = frame.shape[:2]
        if self.sizes is None:
            try:
                self.sizes = original, video_frame_size(*original, self.num_frames, self.settings)
            except ValueError as error:
                raise RejectError(RejectReason.BAD_ASPECT_RATIO, f"video {self.where}: {error}") from None
        elif original != self.sizes[0]:
            (height, width), (first_height, first_width) = original, self.sizes[0]
            raise RejectError(RejectReason.MIXED_FRAME_SIZES,
                              f"video {self.where}: {label} is {width}x{height}, the first frame "
                              f"{first_width}x{first_height} (width x height)")
        resized = resize_frames(frame[None], self.sizes[1])[0]
        self.pngs.append(encode_png(resized, self.png_compression))
