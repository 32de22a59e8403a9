"""The raw schema of each kind becomes the documented segments; bad records raise the right reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.ingest.raw_schema import (
    DEFAULT_OCR_BOXES_PROMPT, DEFAULT_OCR_PROMPT, RejectError, parse_document, parse_record, render_boxes,
)
from data_prep.ingest.rejects import RejectReason


def test_caption():
    document = parse_document({"kind": "caption", "image": "a.jpg", "caption": "A red circle."}, None)
    assert document.images == ["a.jpg"]
    assert document.segments == [{"image": 0}, {"text": "A red circle.", "loss": True}]


def test_interleaved_keeps_document_order():
    record = {"content": [{"text": "Intro."}, {"image": "a.png"}, {"text": "Middle."}, {"image": "b.png"}]}
    document = parse_document(record, "interleaved")
    assert document.kind == "interleaved" and document.images == ["a.png", "b.png"]
    assert document.segments == [
        {"text": "Intro.", "loss": True}, {"image": 0}, {"text": "Middle.", "loss": True}, {"image": 1},
    ]


def test_ocr_transcript_and_boxes():
    plain = parse_document({"kind": "ocr", "image": "p.png", "text": "STOP"}, None)
    assert plain.segments == [
        {"image": 0}, {"text": "Read the text in the image.\n", "loss": False}, {"text": "STOP", "loss": True},
    ]
    boxed = parse_document(
        {"kind": "ocr", "image": "p.png", "prompt": "Read it.", "boxes": [{"bbox_2d": [0, 1, 5, 6], "text": "STOP"}]},
        None,
    )
    assert boxed.segments[1] == {"text": "Read it.\n", "loss": False}
    assert render_boxes(boxed.segments[2], (10, 10), (10, 10)) == '[{"bbox_2d": [0, 1, 5, 6], "text_content": "STOP"}]'
    unprompted = parse_document({"kind": "ocr", "image": "p.png", "boxes": [{"bbox_2d": [0, 1, 5, 6], "text": "S"}]}, None)
    assert unprompted.segments[1] == {"text": DEFAULT_OCR_BOXES_PROMPT + "\n", "loss": False}


def test_readme_states_the_default_ocr_prompts_the_code_uses():
    readme = " ".join((Path(__file__).parents[3] / "README.md").read_text().split())
    assert f'(default "{DEFAULT_OCR_PROMPT}" for a transcript, "{DEFAULT_OCR_BOXES_PROMPT}" for boxes)' in readme


def test_grounding_boxes_become_resized_pixels():
    document = parse_document(
        {"kind": "grounding", "image": "s.jpg", "query": "Locate the cat.",
         "boxes": [{"bbox_2d": [10, 5, 60.5, 45], "label": "cat"}, {"bbox_2d": [0, 0, 100, 50], "label": "all"}]},
        None,
    )
    assert document.segments[:2] == [{"image": 0}, {"text": "Locate the cat.\n", "loss": False}]
    boxes = document.segments[2]
    assert boxes["loss"] is True
    # 100x50 (w x h) -> 112x56: floor the top-left corner, ceil the bottom-right one.
    assert json.loads(render_boxes(boxes, (50, 100), (56, 112))) == [
        {"bbox_2d": [11, 5, 68, 51], "label": "cat"}, {"bbox_2d": [0, 0, 112, 56], "label": "all"},
    ]
    with pytest.raises(RejectError) as error:
        render_boxes(boxes, (40, 100), (56, 112))
    assert error.value.reason is RejectReason.BOX_OUTSIDE_IMAGE


def test_cot_with_and_without_images():
    record = {"kind": "cot", "question": "What is 2 + 3?", "thinking": "2 + 3 = 5.", "answer": "5"}
    document = parse_document(record, None)
    assert document.images == []
    assert document.segments == [
        {"text": "What is 2 + 3?\n", "loss": False},
        {"special": "<think>", "loss": True},
        {"text": "\n2 + 3 = 5.\n", "loss": True},
        {"special": "</think>", "loss": True},
        {"text": "\n5", "loss": True},
    ]
    with_images = parse_document({**record, "images": ["a.png", "b.png"]}, None)
    assert with_images.segments[:2] == [{"image": 0}, {"image": 1}]


def test_text_and_texts_for_tokenizer_training():
    assert parse_record(b'{"kind": "text", "text": "Hello."}', None).segments == [{"text": "Hello.", "loss": True}]
    grounding = parse_document(
        {"kind": "grounding", "image": "s.jpg", "query": "Find it.", "boxes": [{"bbox_2d": [1, 2, 3, 4], "label": "it"}]},
        None,
    )
    assert list(grounding.texts()) == ["Find it.\n", '[{"bbox_2d": [1, 2, 3, 4], "label": "it"}]']


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"{broken", RejectReason.BAD_JSON),
        (b"[1, 2]", RejectReason.BAD_JSON),
        (b'{"text": "no kind"}', RejectReason.UNKNOWN_KIND),
        (b'{"kind": "video", "text": "x"}', RejectReason.UNKNOWN_KIND),
        (b'{"kind": "caption", "caption": "no image"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "caption", "image": "a.png", "caption": 5}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "interleaved", "content": [{"text": "a", "image": "b"}]}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "interleaved", "content": [{"image": "b.png"}]}', RejectReason.EMPTY_TEXT),
        (b'{"kind": "ocr", "image": "a.png"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "grounding", "image": "a.png", "query": "q", "boxes": []}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "grounding", "image": "a.png", "query": "q", "boxes": [{"bbox_2d": [5, 5, 1, 9], "label": "x"}]}',
         RejectReason.BAD_SCHEMA),
        (b'{"kind": "grounding", "image": "a.png", "query": "q", "boxes": [{"bbox_2d": [1, 2, 3], "label": "x"}]}',
         RejectReason.BAD_SCHEMA),
        (b'{"kind": "cot", "question": "q", "thinking": " ", "answer": "a"}', RejectReason.EMPTY_TEXT),
        (b'{"kind": "text", "text": ""}', RejectReason.EMPTY_TEXT),
    ],
)
def test_bad_records_name_their_reason(line, reason):
    with pytest.raises(RejectError) as error:
        parse_record(line, None)
    assert error.value.reason is reason
    assert error.value.detail
