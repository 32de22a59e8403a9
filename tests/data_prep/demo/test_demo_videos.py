"""demo-corpus videos: reproducible MP4s that decode to the frames the records describe, events at the
times the captions and spans say, on frames that 2 fps sampling keeps."""

from __future__ import annotations

import json
import re

import av
import numpy as np
import pytest

from data_prep.demo import command as demo_corpus
from data_prep.demo.scenes import COLORS
from megatron_vl.data.videos import VideoSettings, sample_frame_indices
from tests.data_prep.cli import run_subcommand
from tests.data_prep.demo.conftest import MEDIA_FILES

VIDEO_FILES = ["video_caption", "video_grounding", "interleaved_video", "video_caption_long"]


def records(directory, name) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{name}.jsonl").read_text().splitlines()]


def tree(directory) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def decode(path) -> tuple[np.ndarray, float]:
    """All frames of a video as uint8 [T, H, W, 3], and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, float(stream.average_rate)


def near(frames: np.ndarray, color: str) -> np.ndarray:
    """Which pixels have (nearly) ``color``: H.264's 4:2:0 blurs only the shapes' edges."""
    return np.abs(frames.astype(int) - np.array(COLORS[color])).max(axis=-1) < 40


def color_pixels(frames: np.ndarray, color: str) -> np.ndarray:
    """Per frame [T, H, W, 3], how many pixels have (nearly) ``color``."""
    return near(frames, color).sum(axis=(1, 2))


def video_references(record: dict) -> list[str]:
    if "content" in record:
        return [item["video"] for item in record["content"] if "video" in item]
    return [record["video"]]


def test_records_follow_the_raw_video_formats(demo_media):
    for name in VIDEO_FILES:
        documents = records(demo_media, name)
        assert len(documents) == (2 if name.endswith("_long") else 12)
        for record in documents:
            if name == "interleaved_video":
                assert set(record) == {"kind", "content"} and record["kind"] == "interleaved"
                items = [next(iter(item)) for item in record["content"]]
                assert all(len(item) == 1 for item in record["content"])
                assert items.count("video") == 1 and 1 <= items.count("image") <= 2
                for item in record["content"]:
                    if "image" in item:
                        assert (demo_media / item["image"]).is_file()
            elif record["kind"] == "video_caption":
                assert set(record) == {"kind", "video", "caption"} and record["caption"].strip()
            else:
                assert set(record) == {"kind", "video", "query", "spans"} and record["query"].strip()
            for reference in video_references(record):
                assert reference.endswith(".mp4") and (demo_media / reference).is_file()


@pytest.mark.parametrize("name", VIDEO_FILES)
def test_videos_decode_to_small_frames_of_the_drawn_length(demo_media, name):
    long = name.endswith("_long")
    for record in records(demo_media, name):
        for reference in video_references(record):
            frames, fps = decode(demo_media / reference)
            count, height, width, _ = frames.shape
            assert fps == 4 if long else fps in (4, 6, 8)
            seconds = count / fps
            assert (8 <= seconds <= 16) if long else (seconds in (2.0, 3.0, 4.0))
            assert 64 <= min(height, width) and max(height, width) <= 160 and height % 2 == width % 2 == 0


def test_grounding_spans_are_the_frames_that_show_the_shape(demo_media):
    spans_checked = 0
    for record in records(demo_media, "video_grounding"):
        frames, fps = decode(demo_media / record["video"])
        color = re.fullmatch(r"When is the (\w+) (circle|square|triangle) visible\?", record["query"]).group(1)
        # The shape appears in the top half; the moving shape, which may share its colour, stays in the bottom half.
        shown = color_pixels(frames[:, : frames.shape[1] // 2], color) >= 20
        times = np.arange(len(frames)) / fps
        expected = np.zeros(len(frames), dtype=bool)
        for start, end in record["spans"]:
            assert 0 < start < end <= len(frames) / fps
            expected |= (start <= times) & (times < end)
            spans_checked += 1
        np.testing.assert_array_equal(shown, expected, err_msg=str(record))
    assert spans_checked > 12  # some shapes show up twice


def test_span_boundaries_are_frames_that_2_fps_sampling_keeps(demo_media):
    """Spans are multiples of half a second, so the frames ingest keeps at 2 fps show every change."""
    for record in records(demo_media, "video_grounding"):
        frames, fps = decode(demo_media / record["video"])
        kept = sample_frame_indices(len(frames), fps, VideoSettings(fps=2.0))
        assert [index / fps for index in kept] == [n / 2 for n in range(len(kept))]
        for start, end in record["spans"]:
            assert round(start * fps) in kept and (end * fps == len(frames) or round(end * fps) in kept)


def test_captions_say_what_happens_when(demo_media):
    checked = 0
    for record in records(demo_media, "video_caption") + records(demo_media, "video_caption_long"):
        frames, fps = decode(demo_media / record["video"])
        half = frames.shape[1] // 2
        mover = re.match(r"An? (\w+) (circle|square|triangle) moves from the (left|right) to the", record["caption"])
        color, start_side = mover.group(1), mover.group(3)
        columns = [np.nonzero(near(frame[half:], color))[1].mean() for frame in (frames[0], frames[-1])]
        assert (columns[0] < columns[1]) == (start_side == "left"), record
        for seconds, color in re.findall(r"At (\d+\.\d) seconds an? (\w+) \w+ appears", record["caption"]):
            index = round(float(seconds) * fps)
            top = color_pixels(frames[index - 1 : index + 1, :half], color)
            assert top[1] - top[0] >= 20, (record, seconds)
            checked += 1
        for seconds, color in re.findall(r"At (\d+\.\d) seconds the (\w+) \w+ disappears", record["caption"]):
            index = round(float(seconds) * fps)
            top = color_pixels(frames[index - 1 : index + 1, :half], color)
            assert top[0] - top[1] >= 20, (record, seconds)
            checked += 1
    assert checked >= 14


def test_same_seed_same_videos_other_seed_other_videos(demo_media, tmp_path):
    run_subcommand(demo_corpus, "--out", tmp_path / "again", "--samples-per-kind", 12, "--long-samples", 2,
                   "--seed", 3, "--workers", 2, "--kinds", *MEDIA_FILES)
    assert tree(tmp_path / "again") == tree(demo_media)
    run_subcommand(demo_corpus, "--out", tmp_path / "other", "--samples-per-kind", 2, "--seed", 4,
                   "--kinds", "video_caption")
    assert (tmp_path / "other" / "videos/video_caption/000000_0.mp4").read_bytes() != (
        demo_media / "videos/video_caption/000000_0.mp4").read_bytes()


@pytest.mark.parametrize("sides", [("63", "100"), ("64", "161"), ("12", "32"), ("100", "64")])
def test_odd_or_tiny_video_sides_are_refused(tmp_path, sides):
    with pytest.raises(ValueError, match="--video-min-side/--video-max-side must be even"):
        run_subcommand(demo_corpus, "--out", tmp_path, "--video-min-side", sides[0], "--video-max-side", sides[1])
