"""The raw input schema of ``ingest``: one JSON object per document, per kind (see the README).

Parsing turns a record into a ``RawDocument``: its image references and its segments in document
order, in the sample-shard form (``{"text", "loss"}``, ``{"special", "loss"}``, ``{"image": k}``,
``{"video": k}``), plus ``{"boxes", "image", "label_field", "loss"}`` and ``{"gui", "image", "loss"}``
segments whose text can only be written once the image's resized size is known (``render_boxes``,
``gui_actions.render_gui``) and ``{"spans", "video", "loss"}`` segments checked against the video's
duration once it is decoded (``render_spans``).

A video reference is a video file's path (or tar member suffix), a list of frame image paths, or a
folder path ending in ``/`` whose image files, in name order, are the frames; frames of a list or
folder are taken as sampled already, at the record's (or interleaved item's) ``fps``.

Prompt-and-answer kinds are laid out as ``prompt\\n`` (not in the loss) followed by the answer
(in the loss); a chain of thought is ``<think>\\n...\\n</think>\\nanswer``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator

from data_prep.ingest.gui_actions import gui_answer, gui_text
from data_prep.ingest.rejects import RejectError, RejectReason
from data_prep.sample_shards.sample_meta import KINDS
DEFAULT_OCR_PROMPT = "Read the text in the image."
DEFAULT_OCR_BOXES_PROMPT = "Read the text in the image and give the box of each piece."
DEFAULT_FRAMES_FPS = 2.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RawDocument:
    """A parsed raw record: what to load and how the document reads."""

    kind: str
    """One of ``KINDS``."""
    images: list[str]
    """Image references (paths, or tar member extensions), in document order."""
    segments: list[dict]
    """Segments in document order; ``{"image": k}`` refers to ``images[k]``, ``{"video": k}`` to ``videos[k]``."""
    videos: list[VideoReference] = dataclasses.field(default_factory=list)
    """Video references, in document order."""

    def texts(self) -> Iterator[str]:
        """The document's text, boxes written in original coordinates (for tokenizer training)."""
        for segment in self.segments:
            if "text" in segment:
                yield segment["text"]
            elif "boxes" in segment:
                yield json.dumps(
                    [{"bbox_2d": box["bbox_2d"], segment["label_field"]: box["label"]} for box in segment["boxes"]]
                )
            elif "gui" in segment:
                yield gui_text(segment)
            elif "spans" in segment:
                yield spans_text(segment["spans"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoReference:
    """Where a document's video is: a video file, or frames already sampled (a list of files or a folder)."""

    source: str | tuple[str, ...]
    """A video file (path or tar member suffix), a folder path ending in ``/``, or the frame files in order."""
    fps: float
    """Frame rate of the frames of a list or folder (a video file's own rate is read from the file)."""

    @property
    def is_folder(self) -> bool:
        return isinstance(self.source, str) and self.source.endswith("/")

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str) and not self.is_folder


def parse_record(line: str | bytes, default_kind: str | None) -> RawDocument:
    """Parse one JSONL line (or a tar's ``{key}.json``) into a document, or raise RejectError."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RejectError(RejectReason.BAD_JSON, f"not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise RejectError(RejectReason.BAD_JSON, f"expected a JSON object, got {type(record).__name__}")
    return parse_document(record, default_kind)


def parse_document(record: dict, default_kind: str | None) -> RawDocument:
    """Validate a raw record of any kind (its ``kind`` field, else ``default_kind``)."""
    kind = record.get("kind", default_kind)
    if kind is None:
        raise RejectError(RejectReason.UNKNOWN_KIND, "no 'kind' field; add one or pass --kind")
    if kind not in KINDS:
        raise RejectError(RejectReason.UNKNOWN_KIND, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    return _PARSERS[kind](record)


def _text(record: dict, field: str, *, required: bool = True) -> str | None:
    value = record.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        problem = "is missing" if value is None else f"must be a string, got {type(value).__name__}"
        raise RejectError(RejectReason.BAD_SCHEMA, f"field {field!r} {problem}")
    if not value.strip():
        raise RejectError(RejectReason.EMPTY_TEXT, f"field {field!r} is empty")
    return value


def _image_ref(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise RejectError(RejectReason.BAD_SCHEMA, f"field {field!r} must be a non-empty image path")
    return value


def _video_ref(value, field: str, container: dict) -> VideoReference:
    """A video reference of ``container`` (the record, or an interleaved item), with its ``fps``."""
    if isinstance(value, list):
        if not value or not all(isinstance(frame, str) and frame for frame in value):
            raise RejectError(RejectReason.BAD_SCHEMA, f"field {field!r} as a frame list must list non-empty paths")
        source = tuple(value)
    elif isinstance(value, str) and value:
        source = value
    else:
        raise RejectError(RejectReason.BAD_SCHEMA, f"field {field!r} must be a video path, a frame folder ending "
                                                   "in '/' or a non-empty list of frame paths")
    fps = container.get("fps", DEFAULT_FRAMES_FPS)
    if not _finite_number(fps) or fps <= 0:
        raise RejectError(RejectReason.BAD_SCHEMA, f"field 'fps' must be a positive number, got {fps!r}")
    return VideoReference(source=source, fps=float(fps))


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _spans(record: dict) -> list[list[float]]:
    """Spans ``[[start, end], ...]`` in seconds with ``0 <= start < end``; their end inside the video is
    checked once it is decoded."""
    spans = record.get("spans")
    if not isinstance(spans, list) or not spans:
        raise RejectError(RejectReason.BAD_SCHEMA, "field 'spans' must be a non-empty list of [start, end] seconds")
    for number, span in enumerate(spans):
        if not isinstance(span, list) or len(span) != 2 or not all(map(_finite_number, span)):
            raise RejectError(RejectReason.BAD_SCHEMA, f"span {number}: must be [start, end] seconds, got {span!r}")
        if not 0 <= span[0] < span[1]:
            raise RejectError(RejectReason.BAD_SCHEMA, f"span {number}: {span} needs 0 <= start < end")
    return spans


def _boxes(record: dict, label_field: str, *, required: bool) -> list[dict] | None:
    """Boxes ``{"bbox_2d": [x1, y1, x2, y2], label_field: str}`` in original pixels, as
    ``{"bbox_2d", "label"}``; their fit inside the image is checked once it is loaded."""
    boxes = record.get("boxes")
    if boxes is None and not required:
        return None
    if not isinstance(boxes, list) or not boxes:
        raise RejectError(RejectReason.BAD_SCHEMA, "field 'boxes' must be a non-empty list of boxes")
    parsed = []
    for number, box in enumerate(boxes):
        coordinates = box.get("bbox_2d") if isinstance(box, dict) else None
        if (
            not isinstance(coordinates, list) or len(coordinates) != 4
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in coordinates)
        ):
            raise RejectError(
                RejectReason.BAD_SCHEMA, f"box {number}: 'bbox_2d' must be [x1, y1, x2, y2] numbers, got {box!r}"
            )
        x1, y1, x2, y2 = coordinates
        if not (x1 < x2 and y1 < y2):
            raise RejectError(RejectReason.BAD_SCHEMA, f"box {number}: {coordinates} needs x1 < x2 and y1 < y2")
        parsed.append({"bbox_2d": coordinates, "label": _text(box, label_field)})
    return parsed


def _caption(record: dict) -> RawDocument:
    image = _image_ref(record.get("image"), "image")
    caption = _text(record, "caption")
    return RawDocument(kind="caption", images=[image], segments=[{"image": 0}, {"text": caption, "loss": True}])


def _video_caption(record: dict) -> RawDocument:
    video = _video_ref(record.get("video"), "video", record)
    caption = _text(record, "caption")
    return RawDocument(kind="video_caption", images=[], videos=[video],
                       segments=[{"video": 0}, {"text": caption, "loss": True}])


def _video_grounding(record: dict) -> RawDocument:
    video = _video_ref(record.get("video"), "video", record)
    query = _text(record, "query")
    return RawDocument(
        kind="video_grounding",
        images=[],
        videos=[video],
        segments=[
            {"video": 0},
            {"text": query + "\n", "loss": False},
            {"spans": _spans(record), "video": 0, "loss": True},
        ],
    )


def _interleaved(record: dict) -> RawDocument:
    content = record.get("content")
    if not isinstance(content, list) or not content:
        raise RejectError(RejectReason.BAD_SCHEMA,
                          "field 'content' must be a non-empty list of {text} / {image} / {video} items")
    images, videos, segments = [], [], []
    for number, item in enumerate(content):
        if not isinstance(item, dict) or len(item.keys() & {"text", "image", "video"}) != 1:
            raise RejectError(
                RejectReason.BAD_SCHEMA,
                f"content item {number} must be {{\"text\": ...}}, {{\"image\": ...}} or {{\"video\": ...}}",
            )
        if "image" in item:
            segments.append({"image": len(images)})
            images.append(_image_ref(item["image"], f"content[{number}].image"))
        elif "video" in item:
            segments.append({"video": len(videos)})
            videos.append(_video_ref(item["video"], f"content[{number}].video", item))
        else:
            segments.append({"text": _text(item, "text"), "loss": True})
    if len(segments) == len(images) + len(videos):
        raise RejectError(RejectReason.EMPTY_TEXT, "the document has images or videos but no text")
    return RawDocument(kind="interleaved", images=images, videos=videos, segments=segments)


def _ocr(record: dict) -> RawDocument:
    image = _image_ref(record.get("image"), "image")
    transcript = _text(record, "text", required=False)
    boxes = _boxes(record, "text", required=False)
    if transcript is None and boxes is None:
        raise RejectError(RejectReason.BAD_SCHEMA, "an ocr record needs 'text' (the transcript) or 'boxes'")
    prompt = _text(record, "prompt", required=False) or (DEFAULT_OCR_BOXES_PROMPT if boxes else DEFAULT_OCR_PROMPT)
    answer = (
        {"boxes": boxes, "image": 0, "label_field": "text_content", "loss": True} if boxes
        else {"text": transcript, "loss": True}
    )
    return RawDocument(
        kind="ocr", images=[image], segments=[{"image": 0}, {"text": prompt + "\n", "loss": False}, answer]
    )


def _grounding(record: dict) -> RawDocument:
    image = _image_ref(record.get("image"), "image")
    query = _text(record, "query")
    boxes = _boxes(record, "label", required=True)
    return RawDocument(
        kind="grounding",
        images=[image],
        segments=[
            {"image": 0},
            {"text": query + "\n", "loss": False},
            {"boxes": boxes, "image": 0, "label_field": "label", "loss": True},
        ],
    )


def _cot(record: dict) -> RawDocument:
    images = record.get("images", [])
    if not isinstance(images, list):
        raise RejectError(RejectReason.BAD_SCHEMA, "field 'images' must be a list of image paths")
    images = [_image_ref(image, f"images[{number}]") for number, image in enumerate(images)]
    videos = record.get("videos", [])
    if not isinstance(videos, list):
        raise RejectError(RejectReason.BAD_SCHEMA, "field 'videos' must be a list of video references")
    videos = [_video_ref(video, f"videos[{number}]", record) for number, video in enumerate(videos)]
    question, thinking, answer = _text(record, "question"), _text(record, "thinking"), _text(record, "answer")
    return RawDocument(
        kind="cot",
        images=images,
        videos=videos,
        segments=[
            *({"image": k} for k in range(len(images))),
            *({"video": k} for k in range(len(videos))),
            {"text": question + "\n", "loss": False},
            {"special": "<think>", "loss": True},
            {"text": "\n" + thinking + "\n", "loss": True},
            {"special": "</think>", "loss": True},
            {"text": "\n" + answer, "loss": True},
        ],
    )


def _gui(record: dict) -> RawDocument:
    image = _image_ref(record.get("image"), "image")
    instruction = _text(record, "instruction")
    segments = [{"image": 0}, {"text": instruction + "\n", "loss": False}, gui_answer(record)]
    return RawDocument(kind="gui", images=[image], segments=segments)


def _plain_text(record: dict) -> RawDocument:
    return RawDocument(kind="text", images=[], segments=[{"text": _text(record, "text"), "loss": True}])


_PARSERS = {
    "caption": _caption,
    "interleaved": _interleaved,
    "ocr": _ocr,
    "grounding": _grounding,
    "cot": _cot,
    "text": _plain_text,
    "gui": _gui,
    "video_caption": _video_caption,
    "video_grounding": _video_grounding,
}


def spans_text(spans: list[list[float]]) -> str:
    """A grounding answer: ``"{start:.1f} - {end:.1f} seconds"`` per span, joined with ``", "``."""
    return ", ".join(f"{start:.1f} - {end:.1f} seconds" for start, end in spans)


def render_spans(segment: dict, duration: float) -> str:
    """The answer text of a spans segment; raises RejectError for a span ending after the video (``duration``
    seconds)."""
    for number, (start, end) in enumerate(segment["spans"]):
        if end > duration:
            raise RejectError(RejectReason.SPAN_OUTSIDE_VIDEO,
                              f"span {number} [{start}, {end}] ends after the video's {duration:.3f} seconds")
    return spans_text(segment["spans"])


def render_boxes(segment: dict, original: tuple[int, int], resized: tuple[int, int]) -> str:
    """The answer text of a boxes segment: ``[{"bbox_2d": [x1, y1, x2, y2], label_field: ...}]`` in
    absolute pixels of the resized image (the smallest integer box covering the original one).

    ``original`` and ``resized`` are (height, width). Raises RejectError for a box outside the image.
    """
    (height, width), (new_height, new_width) = original, resized
    rendered = []
    for number, box in enumerate(segment["boxes"]):
        x1, y1, x2, y2 = box["bbox_2d"]
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise RejectError(
                RejectReason.BOX_OUTSIDE_IMAGE,
                f"box {number} {box['bbox_2d']} reaches outside the {width}x{height} (width x height) image",
            )
        # Multiply before dividing: integer coordinates then land exactly on integers when they should.
        scaled = [
            math.floor(x1 * new_width / width), math.floor(y1 * new_height / height),
            min(new_width, math.ceil(x2 * new_width / width)), min(new_height, math.ceil(y2 * new_height / height)),
        ]
        rendered.append({"bbox_2d": scaled, segment["label_field"]: box["label"]})
    return json.dumps(rendered, ensure_ascii=False)
