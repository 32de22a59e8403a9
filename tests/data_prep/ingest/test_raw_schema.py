"""The raw schema of each kind becomes the documented segments; bad records raise the right reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.ingest.raw_schema import (
    DEFAULT_OCR_BOXES_PROMPT, DEFAULT_OCR_PROMPT, RejectError, VideoReference, parse_document, parse_record,
    render_boxes, render_spans,
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


def test_video_caption_and_its_frame_forms():
    document = parse_document({"kind": "video_caption", "video": "clips/a.mp4", "caption": "A dog runs."}, None)
    assert document.images == [] and document.videos == [VideoReference(source="clips/a.mp4", fps=2.0)]
    assert document.videos[0].is_file
    assert document.segments == [{"video": 0}, {"text": "A dog runs.", "loss": True}]
    folder = parse_document({"kind": "video_caption", "video": "clips/a/", "fps": 1, "caption": "x"}, None)
    assert folder.videos == [VideoReference(source="clips/a/", fps=1.0)] and folder.videos[0].is_folder
    listed = parse_document({"kind": "video_caption", "video": ["f0.png", "f1.png"], "caption": "x"}, None)
    assert listed.videos[0].source == ("f0.png", "f1.png")
    assert not listed.videos[0].is_file and not listed.videos[0].is_folder


def test_video_grounding_answers_in_seconds_and_checks_the_end():
    document = parse_document(
        {"kind": "video_grounding", "video": "v.mp4", "query": "When does the ball bounce?",
         "spans": [[3.5, 7], [10.25, 12.0]]}, None,
    )
    assert document.segments[:2] == [{"video": 0}, {"text": "When does the ball bounce?\n", "loss": False}]
    spans = document.segments[2]
    assert (spans["video"], spans["loss"]) == (0, True)
    assert render_spans(spans, 12.0) == "3.5 - 7.0 seconds, 10.2 - 12.0 seconds"
    assert list(document.texts())[1] == "3.5 - 7.0 seconds, 10.2 - 12.0 seconds"
    with pytest.raises(RejectError) as error:
        render_spans(spans, 11.9)
    assert error.value.reason is RejectReason.SPAN_OUTSIDE_VIDEO and "span 1" in error.value.detail


def test_videos_in_interleaved_and_cot_records():
    interleaved = parse_document({"kind": "interleaved", "content": [
        {"text": "Watch:"}, {"video": "v.mp4"}, {"image": "a.png"}, {"video": "frames/", "fps": 4}, {"text": "Done."},
    ]}, None)
    assert interleaved.images == ["a.png"]
    assert interleaved.videos == [VideoReference(source="v.mp4", fps=2.0), VideoReference(source="frames/", fps=4.0)]
    assert interleaved.segments == [
        {"text": "Watch:", "loss": True}, {"video": 0}, {"image": 0}, {"video": 1}, {"text": "Done.", "loss": True},
    ]
    cot = parse_document({"kind": "cot", "images": ["a.png"], "videos": ["v.mp4", ["f0.png", "f1.png"]], "fps": 1,
                          "question": "q", "thinking": "t", "answer": "a"}, None)
    assert cot.segments[:4] == [{"image": 0}, {"video": 0}, {"video": 1}, {"text": "q\n", "loss": False}]
    assert cot.videos[1] == VideoReference(source=("f0.png", "f1.png"), fps=1.0)


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
        (b'{"kind": "video_caption", "caption": "no video"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_caption", "video": [], "caption": "x"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_caption", "video": ["a.png", 3], "caption": "x"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_caption", "video": "f/", "fps": 0, "caption": "x"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_caption", "video": "v.mp4", "caption": " "}', RejectReason.EMPTY_TEXT),
        (b'{"kind": "video_grounding", "video": "v.mp4", "query": "q"}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_grounding", "video": "v.mp4", "query": "q", "spans": [[4, 2]]}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_grounding", "video": "v.mp4", "query": "q", "spans": [[-1, 2]]}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_grounding", "video": "v.mp4", "query": "q", "spans": [[1, 2, 3]]}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "video_grounding", "video": "v.mp4", "query": "q", "spans": [["1", 2]]}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "interleaved", "content": [{"video": "v.mp4"}]}', RejectReason.EMPTY_TEXT),
        (b'{"kind": "interleaved", "content": [{"video": "v.mp4", "image": "a.png"}]}', RejectReason.BAD_SCHEMA),
        (b'{"kind": "cot", "videos": "v.mp4", "question": "q", "thinking": "t", "answer": "a"}', RejectReason.BAD_SCHEMA),
    ],
)
def test_bad_records_name_their_reason(line, reason):
    with pytest.raises(RejectError) as error:
        parse_record(line, None)
    assert error.value.reason is reason
    assert error.value.detail
