"""Decoding a video file with PyAV (FFmpeg): its first video stream's frame rate, the frame count its
container claims, and its frames in order as uint8 RGB arrays.

Every FFmpeg failure (not a container, truncated, corrupt packets) is a ``RejectError``
(``unreadable_video``), and a file without a video stream is ``no_video_stream``: ingest never raises
on bad data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from data_prep.ingest.rejects import RejectError, RejectReason

if TYPE_CHECKING:
    import av

AV_TIME_BASE = 1_000_000
"""FFmpeg's ``AV_TIME_BASE``: a container's duration counts microseconds."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoStreamInfo:
    """What a video file says about its video stream before any frame is decoded."""

    claimed_frames: int
    """Frames the container says the stream holds (0: it does not say); decoding may find another count."""
    fps: float
    """The stream's average frame rate (frames per second)."""
    claimed_seconds: float
    """The length the container states (from the frame count, else the stream's or the file's duration; 0:
    none), to refuse a video that is too long before decoding it."""


@contextlib.contextmanager
def _opened(data: bytes, reference: str) -> Iterator[av.video.stream.VideoStream]:
    import av  # here, not at the top: ingesting pictures needs no PyAV (the GPU check's machine has none)

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams}) or ["none"]
                raise RejectError(RejectReason.NO_VIDEO_STREAM,
                                  f"video {reference}: the file has no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            # Ingest runs one worker process per core: FFmpeg's own threads would only compete with them.
            stream.thread_count = 1
            yield stream
    except av.FFmpegError as error:
        raise RejectError(RejectReason.UNREADABLE_VIDEO,
                          f"video {reference}: cannot decode ({type(error).__name__}: {error})") from None


def stream_info(data: bytes, reference: str) -> VideoStreamInfo:
    """The frame rate and claimed frame count of the file's first video stream; raises RejectError."""
    with _opened(data, reference) as stream:
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise RejectError(RejectReason.UNREADABLE_VIDEO, f"video {reference}: the stream has no frame rate")
        if stream.frames:
            seconds = stream.frames / float(rate)
        elif stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = max(stream.container.duration or 0, 0) / AV_TIME_BASE
        return VideoStreamInfo(claimed_frames=stream.frames, fps=float(rate), claimed_seconds=seconds)


def decode_frames(data: bytes, reference: str, keep: Callable[[int], bool]) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(index, frame)`` for every frame of the first video stream, in order, decoded once; ``frame`` is
    uint8 RGB [H, W, 3] where ``keep(index)``, else None (not converted). Raises RejectError when FFmpeg
    fails, also part-way: a video that cannot be decoded to its end is refused, not cut."""
    with _opened(data, reference) as stream:
        for index, frame in enumerate(stream.container.decode(stream)):
            yield index, frame.to_ndarray(format="rgb24") if keep(index) else None
