"""ingest: raw JSONL / webdataset documents -> sample shards, with every reject reason logged."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from transformers import Qwen2VLImageProcessorPil

from data_prep.ingest import command as ingest
from data_prep.demo.scenes import COLORS
from data_prep.ingest.image_dedup import ImageDeduplicator
from data_prep.ingest.rejects import RejectReason
from data_prep.ingest.sample_builder import BuildSettings
from data_prep.sample_shards.manifest import MANIFEST_NAME, load_manifest
from data_prep.sample_shards.reader import iter_dataset
from megatron_vl.data.images import ImageSettings, patchify
from tests.data_prep.cli import run_subcommand
from tests.data_prep.ingest.test_video_ingest import VIDEO_REJECTS

DEMO_KINDS = {"caption": 12, "interleaved": 14, "ocr": 12, "grounding": 12, "cot": 14, "text": 12}


def run_ingest(*argv) -> dict:
    assert run_subcommand(ingest, *argv) == 0
    return load_manifest(str(argv[argv.index("--out") + 1]))


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGB"
    return np.asarray(image)


@pytest.fixture(scope="module")
def ingested(demo_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingested")
    manifest = run_ingest("--input", demo_raw, "--out", out, "--workers", 1, "--shard-size", 10)
    return out, manifest, list(iter_dataset(str(out)))


def test_every_demo_document_becomes_a_sample(ingested):
    out, manifest, samples = ingested
    assert manifest.kinds == DEMO_KINDS
    assert manifest.num_samples == len(samples) == sum(DEMO_KINDS.values())
    assert manifest.num_rejected == 0 and manifest.rejects == {}
    assert [shard.num_samples for shard in manifest.shards] == [10] * 7 + [6]
    assert manifest.to_json() == (out / MANIFEST_NAME).read_text()
    assert [record.key for _, record in samples] == [f"{i:09d}" for i in range(len(samples))]
    for shard in manifest.shards:
        data = (out / shard.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard.bytes, shard.sha256)
    for _, record in samples:
        meta = record.meta
        assert [s["image"] for s in meta.segments if "image" in s] == list(range(len(meta.images)))
        assert all(set(s) in ({"image"}, {"text", "loss"}, {"special", "loss"}) for s in meta.segments)
        for entry, png in zip(meta.images, record.images):
            assert entry.height % 28 == 0 and entry.width % 28 == 0
            assert decode(png).shape == (entry.height, entry.width, 3)


def _source_image_paths(meta) -> list[str]:
    path, line = meta.source["file"], meta.source["line"]
    with open(path, encoding="utf-8") as file:
        record = json.loads(file.readlines()[line - 1])
    if "content" in record:
        references = [item["image"] for item in record["content"] if "image" in item]
    else:
        references = record.get("images", [record["image"]] if "image" in record else [])
    return [os.path.join(os.path.dirname(path), reference) for reference in references]


def test_stored_images_give_the_processors_patches_of_the_originals(ingested):
    _, _, samples = ingested
    processor = Qwen2VLImageProcessorPil()
    settings = ImageSettings()
    checked = 0
    for _, record in samples[::3]:
        for entry, png, path in zip(record.meta.images, record.images, _source_image_paths(record.meta)):
            with open(path, "rb") as file:
                assert entry.sha256 == hashlib.sha256(file.read()).hexdigest()
            original = ImageOps.exif_transpose(Image.open(path))
            assert (entry.orig_height, entry.orig_width) == (original.height, original.width)
            expected = processor(images=[original])
            patches, grid = patchify(decode(png), settings)
            assert [list(grid)] == expected["image_grid_thw"].tolist()
            np.testing.assert_array_equal(patches, expected["pixel_values"])
            checked += 1
    assert checked >= 10


def test_grounding_boxes_land_on_the_drawn_shapes(ingested):
    _, _, samples = ingested
    grounding = [record for _, record in samples if record.meta.kind == "grounding"]
    for record in grounding:
        pixels = decode(record.images[0]).astype(int)
        answer = json.loads(record.meta.segments[-1]["text"])
        for box in answer:
            x1, y1, x2, y2 = box["bbox_2d"]
            assert 0 <= x1 < x2 <= pixels.shape[1] and 0 <= y1 < y2 <= pixels.shape[0]
            center = pixels[(y1 + y2) // 2, (x1 + x2) // 2]
            assert np.abs(center - COLORS[box["label"].split()[0]]).max() < 40, (record.key, box)


def smooth_picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (80, 60), tuple(int(v) for v in rng.integers(0, 256, 3)))
    ImageDraw.Draw(image).ellipse((10, 10, 50, 45), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


BAD_LINES = {
    1: ("{broken", "bad_json"),
    2: ('{"text": "no kind"}', "unknown_kind"),
    3: ('{"kind": "caption", "caption": "no image"}', "bad_schema"),
    4: ('{"kind": "text", "text": "   "}', "empty_text"),
    5: ('{"kind": "caption", "image": "images/nope.png", "caption": "x"}', "missing_image"),
    6: ('{"kind": "caption", "image": "images/garbage.png", "caption": "x"}', "unreadable_image"),
    7: ('{"kind": "caption", "image": "images/thin.png", "caption": "x"}', "bad_aspect_ratio"),
    8: ('{"kind": "grounding", "image": "images/good.png", "query": "q", '
        '"boxes": [{"bbox_2d": [0, 0, 81, 10], "label": "x"}]}', "box_outside_image"),
    9: ('{"kind": "caption", "image": "images/good.png", "caption": "first"}', None),
    11: ('{"kind": "caption", "image": "images/good.png", "caption": "again"}', "duplicate_image"),
    12: ('{"kind": "caption", "image": "images/good_copy.jpg", "caption": "re-encoded"}', "near_duplicate_image"),
    13: ('{"kind": "grounding", "image": "images/good.png", "query": "q", '
         '"boxes": [{"bbox_2d": [0, 0, 80, 60], "label": "x"}]}', None),
    14: ('{"text": "plain text with --kind"}', None),
    15: ('{"kind": "caption", "image": "images/truncated.jpg", "caption": "x"}', "unreadable_image"),
}


def test_every_reject_reason_is_logged_and_counted(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    smooth_picture(0).save(raw / "images/good.png")
    smooth_picture(0).save(raw / "images/good_copy.jpg", quality=90)
    Image.new("RGB", (300, 1)).save(raw / "images/thin.png")
    (raw / "images/garbage.png").write_bytes(b"\x89PNG not really")
    complete = (raw / "images/good_copy.jpg").read_bytes()
    (raw / "images/truncated.jpg").write_bytes(complete[: len(complete) // 2])
    lines = [BAD_LINES[n][0] if n in BAD_LINES else "" for n in range(1, 16)]
    lines[13] = lines[13].replace('{"text"', '{"kind": "text", "text"')
    (raw / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw / "mixed.jsonl", "--out", out, "--workers", 1, "--near-dup")

    logged = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    expected = {number: reason for number, (_, reason) in BAD_LINES.items() if reason}
    assert {entry["line"]: entry["reason"] for entry in logged} == expected
    assert all(entry["file"] == str(raw / "mixed.jsonl") and entry["detail"] for entry in logged)
    # unreadable_shard is an input, not a document: tests/data_prep/ingest/test_streamed_inputs.py;
    # the gui reasons: tests/data_prep/ingest/test_gui_ingest.py; the video ones: test_video_ingest.py
    elsewhere = {"unreadable_shard", "bad_gui_action", "point_outside_image"} | VIDEO_REJECTS
    assert set(expected.values()) == {reason.value for reason in RejectReason} - elsewhere
    assert manifest.rejects == {reason: 2 if reason == "unreadable_image" else 1 for reason in expected.values()}
    assert manifest.num_samples == 3 and manifest.kinds == {"caption": 1, "grounding": 1, "text": 1}
    assert [record.meta.source["line"] for _, record in iter_dataset(str(out))] == [9, 13, 14]
    summary = capsys.readouterr().out
    assert "ingested 3 of 14 documents" in summary  # the blank line is no document
    assert all(reason in summary for reason in expected.values())


def test_output_does_not_depend_on_the_number_of_workers(demo_raw, tmp_path):
    one = run_ingest("--input", demo_raw, "--out", tmp_path / "one", "--workers", 1, "--near-dup", 2)
    two = run_ingest("--input", demo_raw, "--out", tmp_path / "two", "--workers", 2, "--near-dup", 2)
    assert one.shards == two.shards and one.rejects == two.rejects


def test_shard_size_in_bytes(demo_raw, tmp_path):
    manifest = run_ingest("--input", demo_raw / "caption.jsonl", "--out", tmp_path, "--workers", 1,
                          "--shard-size", "40kB")
    assert len(manifest.shards) > 1
    for shard in manifest.shards:
        assert shard.bytes == os.path.getsize(tmp_path / shard.name) <= 40_000
    assert sum(shard.num_samples for shard in manifest.shards) == 12


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_webdataset_tars_are_read(tmp_path):
    def jpeg(seed):
        buffer = io.BytesIO()
        smooth_picture(seed).save(buffer, format="JPEG")
        return buffer.getvalue()

    with tarfile.open(tmp_path / "web.tar", "w") as tar:
        add_member(tar, "a/0001.json", json.dumps({"kind": "grounding", "image": "jpg", "query": "Find it.",
                                                   "boxes": [{"bbox_2d": [10, 10, 50, 45], "label": "ball"}]}).encode())
        add_member(tar, "a/0001.jpg", jpeg(1))
        add_member(tar, "a/0002.jpg", jpeg(2))  # img2dataset style: image + txt + metadata json
        add_member(tar, "a/0002.txt", b"A ball on a plain background.")
        add_member(tar, "a/0002.json", b'{"url": "http://example.com/x.jpg", "width": 80}')
        add_member(tar, "a/0003.json", json.dumps({"kind": "interleaved", "content": [
            {"text": "Two pictures:"}, {"image": "0.png"}, {"image": "1.png"}]}).encode())
        add_member(tar, "a/0003.0.png", jpeg(3))
    out = tmp_path / "out"
    manifest = run_ingest("--input", tmp_path / "web.tar", "--out", out, "--kind", "caption", "--workers", 1)
    samples = [record for _, record in iter_dataset(str(out))]
    assert [record.meta.source for record in samples] == [
        {"tar": str(tmp_path / "web.tar"), "key": "a/0001"}, {"tar": str(tmp_path / "web.tar"), "key": "a/0002"},
    ]
    assert samples[0].meta.segments[-1]["text"] == '[{"bbox_2d": [10, 9, 53, 42], "label": "ball"}]'
    assert samples[1].meta.kind == "caption"
    assert samples[1].meta.segments[-1] == {"text": "A ball on a plain background.", "loss": True}
    logged = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(entry["key"], entry["reason"]) for entry in logged] == [("a/0003", "missing_image")]
    assert manifest.num_samples == 2


def test_existing_output_is_kept_unless_overwrite(demo_raw, tmp_path):
    run_ingest("--input", demo_raw / "text.jsonl", "--out", tmp_path, "--workers", 1)
    with pytest.raises(ValueError, match="already holds an ingest output.*--overwrite"):
        run_ingest("--input", demo_raw / "text.jsonl", "--out", tmp_path, "--workers", 1)
    manifest = run_ingest("--input", demo_raw / "cot.jsonl", "--out", tmp_path, "--workers", 1, "--overwrite")
    assert manifest.kinds == {"cot": 12}


def test_bad_options_are_clear_errors(demo_raw, tmp_path):
    with pytest.raises(ValueError, match="--dedup-kinds names unknown kinds"):
        run_ingest("--input", demo_raw, "--out", tmp_path, "--dedup-kinds", "caption,videos")
    with pytest.raises(ValueError, match="does not exist"):
        run_ingest("--input", tmp_path / "missing.jsonl", "--out", tmp_path)
    with pytest.raises(SystemExit):
        run_ingest("--input", demo_raw, "--out", tmp_path, "--shard-size", "12 parsecs")


def test_bad_settings_name_the_field_and_the_value(demo_raw, tmp_path):
    with pytest.raises(ValueError, match="ingest.workers must be a positive integer, got 0"):
        run_ingest("--input", demo_raw, "--out", tmp_path, "--workers", 0)
    with pytest.raises(ValueError, match=r"BuildSettings.png_compression=12: choose one of"):
        BuildSettings(image_settings=ImageSettings(), default_kind=None, png_compression=12, perceptual_hashes=False)
    with pytest.raises(ValueError, match=r"--near-dup.DISTANCE=40: choose one of"):
        ImageDeduplicator(40)
