"""Why an input document was not ingested, and the log that records each one."""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
from typing import TextIO


class RejectReason(str, enum.Enum):
    """Every reason ``ingest`` rejects a document; the README lists them with their fixes."""

    BAD_JSON = "bad_json"
    """The line (or the tar's ``{key}.json``) is not a JSON object."""
    UNKNOWN_KIND = "unknown_kind"
    """No ``kind`` field and no ``--kind``, or a kind other than the known ones."""
    BAD_SCHEMA = "bad_schema"
    """A required field is missing or has the wrong type, or a box is malformed."""
    EMPTY_TEXT = "empty_text"
    """A text field is empty or only whitespace."""
    MISSING_IMAGE = "missing_image"
    """The image file (or tar member) does not exist."""
    UNREADABLE_IMAGE = "unreadable_image"
    """The image exists but cannot be decoded (corrupt, truncated, not an image, too large)."""
    BAD_ASPECT_RATIO = "bad_aspect_ratio"
    """The image's (or video frame's) long side is more than 200 times its short side."""
    BOX_OUTSIDE_IMAGE = "box_outside_image"
    """A box reaches outside its image."""
    POINT_OUTSIDE_IMAGE = "point_outside_image"
    """A GUI target point or action point lies outside its screenshot."""
    BAD_GUI_ACTION = "bad_gui_action"
    """A GUI action is malformed: unknown name, missing, extra or ill-typed argument, bad scroll direction,
    empty text or keys."""
    MISSING_VIDEO = "missing_video"
    """The video file, a frame file of a frame list, or a frame folder (or tar member) does not exist."""
    UNREADABLE_VIDEO = "unreadable_video"
    """The video cannot be opened or decoded to its end (corrupt, truncated, not a video, no frame rate), or a
    frame of a frame folder is not a readable image."""
    NO_VIDEO_STREAM = "no_video_stream"
    """The file opens but holds no video stream (audio only, subtitles, ...)."""
    NO_VIDEO_FRAMES = "no_video_frames"
    """Fewer decodable frames (or frame files) than one temporal patch (2 frames): nothing to pair."""
    MIXED_FRAME_SIZES = "mixed_frame_sizes"
    """The frames of one video (a frame folder, or a stream that changes size) are not all the same size."""
    VIDEO_TOO_LONG = "video_too_long"
    """The video lasts longer than ``--video-max-seconds``, or a frame folder holds more frames than
    ``--video-max-frames``: refused whole, never cut."""
    SPAN_OUTSIDE_VIDEO = "span_outside_video"
    """A grounding span ends after the video does."""
    DUPLICATE_IMAGE = "duplicate_image"
    """Every image of the document is byte-identical to one already ingested."""
    NEAR_DUPLICATE_IMAGE = "near_duplicate_image"
    """Every image of the document looks like one already ingested (perceptual hash, ``--near-dup``)."""
    UNREADABLE_SHARD = "unreadable_shard"
    """Not a document: an input (tar or JSONL; file, URL or ``pipe:`` command) that could not be read to its
    end after all retries (unreachable, truncated, command failed); its documents after the failure are missing."""


class RejectError(Exception):
    """A document that cannot be ingested; ``reason`` is counted, ``detail`` goes to the reject log."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reject:
    """One rejected document: where it came from, why, and the details a person needs to fix it."""

    source: dict
    """``{"file", "line"}`` for JSONL or ``{"tar", "key"}`` for webdataset input (``{"file"}`` or ``{"tar"}``
    alone for an unreadable input)."""
    reason: RejectReason
    """The reason category (counted in the summary)."""
    detail: str
    """What exactly was wrong."""


class RejectLog:
    """Appends one JSON line per reject to a file and counts them by reason."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, reject: Reject) -> None:
        self.counts[reject.reason.value] += 1
        record = {**reject.source, "reason": reject.reason.value, "detail": reject.detail}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
