"""The raw input schema of ``ingest``: one JSON object per document, per kind (see the README).

Parsing turns a record into a ``RawDocument``: its image references and its segments in document
order, in the sample-shard form (``{"text", "loss"}``, ``{"special", "loss"}``, ``{"image": k}``),
plus ``{"boxes", "image", "label_field", "loss"}`` and ``{"gui", "image", "loss"}`` segments whose text
can only be written once the image's resized size is known (``render_boxes``, ``gui_actions.render_gui``).

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class RawDocument:
    """A parsed raw record: what to load and how the document reads."""

    kind: str
    """One of ``KINDS``."""
    images: list[str]
    """Image references (paths, or tar member extensions), in document order."""
    segments: list[dict]
    """Segments in document order; ``{"image": k}`` refers to ``images[k]``."""

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


def _interleaved(record: dict) -> RawDocument:
    content = record.get("content")
    if not isinstance(content, list) or not content:
        raise RejectError(RejectReason.BAD_SCHEMA, "field 'content' must be a non-empty list of {text} / {image} items")
    images, segments = [], []
    for number, item in enumerate(content):
        if not isinstance(item, dict) or len(item.keys() & {"text", "image"}) != 1:
            raise RejectError(
                RejectReason.BAD_SCHEMA, f"content item {number} must be {{\"text\": ...}} or {{\"image\": ...}}"
            )
        if "image" in item:
            segments.append({"image": len(images)})
            images.append(_image_ref(item["image"], f"content[{number}].image"))
        else:
            segments.append({"text": _text(item, "text"), "loss": True})
    if len(segments) == len(images):
        raise RejectError(RejectReason.EMPTY_TEXT, "the document has images but no text")
    return RawDocument(kind="interleaved", images=images, segments=segments)


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
    question, thinking, answer = _text(record, "question"), _text(record, "thinking"), _text(record, "answer")
    return RawDocument(
        kind="cot",
        images=images,
        segments=[
            *({"image": k} for k in range(len(images))),
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
}


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
