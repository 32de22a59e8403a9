"""demo-corpus: deterministic by seed, every kind, and what the text says matches what is drawn."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from data_prep.demo import command as demo_corpus
from data_prep.demo.scenes import COLORS, SHADED_BLUE, shaded_background
from data_prep.ingest.raw_schema import parse_document
from tests.data_prep.cli import run_subcommand
from tests.data_prep.conftest import PICTURE_AND_TEXT_FILES

FILES = ["caption", "interleaved", "ocr", "grounding", "cot", "text", "interleaved_long", "cot_long"]


def records(directory, name) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{name}.jsonl").read_text().splitlines()]


def tree(directory) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def test_every_kind_is_written_in_the_raw_schema(demo_raw):
    for name in FILES:
        documents = records(demo_raw, name)
        assert len(documents) == (2 if name.endswith("_long") else 12)
        for record in documents:
            parsed = parse_document(record, None)
            assert parsed.kind == name.removesuffix("_long")
            for reference in parsed.images:
                assert (demo_raw / reference).is_file()
    images = list((demo_raw / "images").rglob("*.*"))
    assert {path.suffix for path in images} == {".png", ".jpg"}
    sizes = {Image.open(path).size for path in images}
    assert any(width != height for width, height in sizes)
    long_sides = [max(Image.open(demo_raw / ref).size) for r in records(demo_raw, "interleaved_long")
                  for ref in parse_document(r, None).images]
    assert len(long_sides) >= 16 and min(long_sides) >= 224


def test_same_seed_same_bytes_other_seed_other_corpus(demo_raw, tmp_path):
    run_subcommand(demo_corpus, "--out", tmp_path / "again", "--samples-per-kind", 12, "--long-samples", 2,
                   "--seed", 3, "--workers", 2, "--kinds", *PICTURE_AND_TEXT_FILES)
    assert tree(tmp_path / "again") == tree(demo_raw)
    run_subcommand(demo_corpus, "--out", tmp_path / "other", "--samples-per-kind", 12, "--long-samples", 2,
                   "--seed", 4, "--kinds", "caption")
    assert records(tmp_path / "other", "caption") != records(demo_raw, "caption")


def test_grounding_boxes_are_where_the_shapes_are_drawn(demo_raw):
    for record in records(demo_raw, "grounding"):
        pixels = np.asarray(Image.open(demo_raw / record["image"]).convert("RGB")).astype(int)
        for box in record["boxes"]:
            x1, y1, x2, y2 = box["bbox_2d"]
            color = np.array(COLORS[box["label"].split()[0]])
            assert np.abs(pixels[(y1 + y2) // 2, (x1 + x2) // 2] - color).max() < 30
            # The shape touches its box: some pixel of its colour lies on the top and the bottom row (of a PNG:
            # JPEG blurs a triangle's one-pixel tip into the shaded background).
            for row in (y1, y2 - 1) if record["image"].endswith(".png") else ():
                assert (np.abs(pixels[row, x1:x2] - color).max(axis=-1) < 60).any(), (record, row)
        # Around the shape, the shaded background.
        background = np.asarray(shaded_background(pixels.shape[1], pixels.shape[0])).astype(int)
        outside = np.ones(pixels.shape[:2], dtype=bool)
        for box in record["boxes"]:
            x1, y1, x2, y2 = box["bbox_2d"]
            outside[y1:y2, x1:x2] = False
        assert np.abs(pixels[outside] - background[outside]).mean() < 3, record


def test_a_shaded_background_tells_every_pixel_where_it_lies():
    """Red counts columns and green rows, from 0 at the top left to 255 at the bottom right."""
    pixels = np.asarray(shaded_background(60, 30)).astype(int)
    assert pixels.shape == (30, 60, 3)
    assert (pixels[0, 0] == [0, 0, SHADED_BLUE]).all() and (pixels[-1, -1] == [255, 255, SHADED_BLUE]).all()
    assert (np.diff(pixels[..., 0], axis=1) > 0).all() and (np.diff(pixels[..., 0], axis=0) == 0).all()
    assert (np.diff(pixels[..., 1], axis=0) > 0).all() and (np.diff(pixels[..., 1], axis=1) == 0).all()


def test_captions_name_every_shape(demo_raw):
    for record in records(demo_raw, "caption"):
        named = re.findall(r"a (\w+) (circle|square|triangle) at the", record["caption"], flags=re.IGNORECASE)
        assert named
        pixels = np.asarray(Image.open(demo_raw / record["image"]).convert("RGB")).astype(int)
        for color, _ in named:
            distance = np.abs(pixels - np.array(COLORS[color.lower()])).max(axis=-1)
            assert (distance < 30).sum() >= 10, (record, color)


def test_ocr_boxes_hold_ink(demo_raw):
    boxed = [record for record in records(demo_raw, "ocr") if "boxes" in record]
    assert boxed and len(boxed) < 12
    for record in boxed:
        grey = np.asarray(Image.open(demo_raw / record["image"]).convert("L")).astype(int)
        for box in record["boxes"]:
            x1, y1, x2, y2 = box["bbox_2d"]
            assert grey[y1:y2, x1:x2].min() < 100 and box["text"].strip()


def test_chains_of_thought_reach_the_right_answer(demo_raw):
    checked = 0
    for record in records(demo_raw, "cot") + records(demo_raw, "cot_long"):
        match = re.fullmatch(r"What is ([\d +x-]+)\?", record["question"])
        if match:
            assert int(record["answer"]) == eval(match.group(1).replace("x", "*"))
            assert record["thinking"].endswith(f"{record['answer']}.")
            checked += 1
    assert checked >= 5


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--min-side/--max-side"):
        run_subcommand(demo_corpus, "--out", tmp_path, "--min-side", 300, "--max-side", 200)
    with pytest.raises(ValueError, match="demo-corpus.jpeg_fraction must be a number in \\[0, 1\\], got 1.5"):
        run_subcommand(demo_corpus, "--out", tmp_path, "--jpeg-fraction", 1.5)


def test_the_scored_kinds_can_have_more_documents_than_the_others(tmp_path):
    """--caption-and-grounding-samples sets only those two counts; their first documents are the ones a smaller
    count draws, because every document is drawn from its own seed."""
    run_subcommand(demo_corpus, "--out", tmp_path / "more", "--samples-per-kind", 2, "--caption-and-grounding-samples",
                   5, "--kinds", "caption", "grounding", "ocr")
    run_subcommand(demo_corpus, "--out", tmp_path / "fewer", "--samples-per-kind", 2, "--kinds", "caption", "grounding")
    assert {name: len(records(tmp_path / "more", name)) for name in ("caption", "grounding", "ocr")} == {
        "caption": 5, "grounding": 5, "ocr": 2}
    for name in ("caption", "grounding"):
        assert records(tmp_path / "more", name)[:2] == records(tmp_path / "fewer", name)


def test_language_documents_are_picture_documents_without_their_pictures(tmp_path):
    """The text warm-up reads as the picture documents do: captions, grounding queries with their boxes, OCR
    transcripts, interleaved text; no picture is drawn for them."""
    run_subcommand(demo_corpus, "--out", tmp_path, "--kinds", "language", "--language-samples", 24, "--seed", 3)
    texts = [record["text"] for record in records(tmp_path, "language")]
    assert len(texts) == 24 and all(record["kind"] == "text" for record in records(tmp_path, "language"))
    assert any(re.fullmatch(r"A .* on a (white|gray|black) background\.", text) for text in texts)
    assert any(re.fullmatch(r'Locate (the|every) [a-z ]+\.\n\[\{"bbox_2d": \[.*\]', text, re.S) for text in texts)
    assert not any((tmp_path / "images" / "language").iterdir())
    for text in texts:
        parse_document({"kind": "text", "text": text}, None)


def test_benchmark_files_hold_the_held_out_pictures_and_answers(tmp_path):
    out = tmp_path / "held_out"
    run_subcommand(demo_corpus, "--out", out, "--samples-per-kind", 3, "--seed", 1, "--kinds", "caption", "grounding",
                   "--benchmark-files")
    captions = records(out / "benchmarks", "captions")
    grounding = records(out / "benchmarks", "grounding")
    for row, record in zip(captions, records(out, "caption")):
        assert row == {"image": f"../{record['image']}", "captions": [record["caption"]]}
        assert (out / "benchmarks" / row["image"]).is_file()
    for row, record in zip(grounding, records(out, "grounding")):
        assert row["query"] == record["query"] and row["boxes"] == [box["bbox_2d"] for box in record["boxes"]]
    assert len(captions) == len(grounding) == 3
