"""ingest of videos: files decoded with PyAV and sampled as the video processor samples them, frame
folders, the video flags, and every video reject reason, with no good record lost among bad ones."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile

import av
import numpy as np
import pytest
from PIL import Image

from data_prep.ingest import command as ingest
from data_prep.merge import merge_ingested
from data_prep.sample_shards.manifest import IngestManifest, load_manifest
from data_prep.sample_shards.sample_meta import VIDEO_FRAME_MEMBER, SampleMeta, SampleVideo
from data_prep.webdataset_tar import iter_keyed_members
from megatron_vl.data.videos import VideoSettings, resize_frames, sample_frame_indices, video_frame_size
from tests.data_prep.cli import run_subcommand

VIDEO_REJECTS = {"missing_video", "unreadable_video", "no_video_stream", "no_video_frames", "mixed_frame_sizes",
                 "video_too_long", "span_outside_video"}
"""The reject reasons this file covers (test_ingest.py covers the others)."""


def frame_pixels(index: int, height: int, width: int) -> np.ndarray:
    """Frame ``index`` of a test video: its grey level encodes the index, a moving bar gives it content."""
    pixels = np.full((height, width, 3), 20 + (7 * index) % 220, dtype=np.uint8)
    pixels[:, (3 * index) % width: (3 * index) % width + 8] = (250, 40, 40)
    return pixels


def encode_video(path, *, frames: int, fps: int, height: int = 48, width: int = 64, codec: str = "libx264",
                 container: str = "mp4", options: dict | None = None) -> None:
    with av.open(str(path), "w", format=container, options=options or {}) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index, height, width), format="rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode())


def audio_only_file(path) -> None:
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("aac", rate=8000)
        for index in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            output.mux(stream.encode(frame))
        output.mux(stream.encode())


def decoded_frames(path) -> np.ndarray:
    """Every frame of a video file as PyAV decodes it, uint8 [T, H, W, 3] (the reference)."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def run_ingest(*argv) -> IngestManifest:
    assert run_subcommand(ingest, *argv) == 0
    return load_manifest(str(argv[argv.index("--out") + 1]))


def stored_samples(out) -> list[tuple[SampleMeta, list[list[np.ndarray]]]]:
    """Each sample's JSON and its videos' stored frames, read straight from the shards' tar members."""
    samples = []
    for shard in load_manifest(str(out)).shards:
        for key, members in iter_keyed_members(str(out / shard.name)):
            meta = SampleMeta.from_json(members["json"], where=key)
            videos = [[None] * video.num_frames for video in meta.videos]
            for suffix, data in members.items():
                if match := VIDEO_FRAME_MEMBER.fullmatch(suffix):
                    videos[int(match.group(1))][int(match.group(2))] = png_pixels(data)
            assert all(frame is not None for frames in videos for frame in frames), key
            samples.append((meta, videos))
    return samples


def write_jsonl(path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


@pytest.mark.parametrize("container, codec", [("mp4", "libx264"), ("matroska", "mpeg4")])
def test_kept_frames_are_the_processors_sampled_frames_resized(tmp_path, container, codec):
    # 3 s at 10 fps: 2 fps keeps frames 0, 5, ..., 25. Matroska does not state its frame count: the
    # count comes from decoding (a second pass), with the same result.
    raw = tmp_path / "raw"
    raw.mkdir()
    encode_video(raw / "clip.vid", frames=30, fps=10, codec=codec, container=container)
    write_jsonl(raw / "videos.jsonl", [{"kind": "video_caption", "video": "clip.vid", "caption": "A bar moves."}])
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw / "videos.jsonl", "--out", out, "--workers", 1)
    [(meta, [frames])] = stored_samples(out)

    settings = VideoSettings()
    indices = sample_frame_indices(30, 10.0, settings)
    assert indices == [0, 5, 10, 15, 20, 25]
    size = video_frame_size(48, 64, len(indices), settings)
    expected = resize_frames(decoded_frames(raw / "clip.vid")[indices], size)
    np.testing.assert_array_equal(np.stack(frames), expected)
    assert meta.videos == [SampleVideo(
        num_frames=6, height=size[0], width=size[1], orig_height=48, orig_width=64, fps=2.0, duration=3.0,
        sha256=hashlib.sha256((raw / "clip.vid").read_bytes()).hexdigest(),
    )]
    assert meta.segments == [{"video": 0}, {"text": "A bar moves.", "loss": True}]
    assert manifest.kinds == {"video_caption": 1} and manifest.num_images == 0
    assert manifest.video_settings == settings


def test_video_flags_change_the_sampling_and_are_recorded(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    encode_video(raw / "clip.mp4", frames=30, fps=10)
    write_jsonl(raw / "videos.jsonl", [{"kind": "video_caption", "video": "clip.mp4", "caption": "x"}])
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw / "videos.jsonl", "--out", out, "--workers", 1, "--video-fps", 1,
                          "--video-min-frames", 2, "--video-max-frames", 8, "--video-min-pixels", 28 * 28 * 4,
                          "--video-max-pixels", 28 * 28 * 6, "--video-max-tokens", 1000, "--video-max-seconds", 60)
    settings = VideoSettings(fps=1.0, min_frames=2, max_frames=8, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 6,
                             max_video_tokens=1000, max_seconds=60.0)
    assert manifest.video_settings == settings
    [(meta, [frames])] = stored_samples(out)
    indices = sample_frame_indices(30, 10.0, settings)
    assert indices == [0, 15]  # 3 s at 1 fps: 3 frames, rounded down to a whole temporal patch
    (video,) = meta.videos
    assert (video.num_frames, video.fps) == (2, pytest.approx(2 / 3))
    size = video_frame_size(48, 64, 2, settings)
    assert (video.height, video.width) == size
    np.testing.assert_array_equal(np.stack(frames), resize_frames(decoded_frames(raw / "clip.mp4")[indices], size))
    with pytest.raises(ValueError, match="min_frames=9 exceeds max_frames=8"):
        run_ingest("--input", raw / "videos.jsonl", "--out", tmp_path / "bad", "--video-min-frames", 9,
                   "--video-max-frames", 8)


def test_manifests_without_video_settings_read_as_the_defaults(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "text.jsonl", [{"kind": "text", "text": "Hello."}])
    manifest = run_ingest("--input", raw / "text.jsonl", "--out", tmp_path / "out", "--workers", 1,
                          "--video-max-seconds", 10)
    values = json.loads(manifest.to_json())
    del values["video_settings"]
    old = IngestManifest.from_json(json.dumps(values))
    assert old.video_settings == VideoSettings() and dataclasses.replace(old, video_settings=manifest.video_settings) == manifest


def write_frames(folder, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    frames = []
    for index, (height, width) in enumerate(sizes):
        frames.append(frame_pixels(index, height, width))
        Image.fromarray(frames[-1]).save(folder / f"{index:03d}.png")
    return frames


def test_frame_folders_and_lists_keep_every_frame(tmp_path):
    raw = tmp_path / "raw"
    frames = write_frames(raw / "clip", [(60, 80)] * 5)
    (raw / "clip" / "notes.txt").write_text("not a frame")
    write_jsonl(raw / "videos.jsonl", [
        {"kind": "video_caption", "video": "clip/", "fps": 1, "caption": "Five frames."},
        {"kind": "video_grounding", "video": ["clip/004.png", "clip/000.png", "clip/002.png"],
         "query": "When?", "spans": [[0.5, 1.5]]},
    ])
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw / "videos.jsonl", "--out", out, "--workers", 1)
    assert manifest.kinds == {"video_caption": 1, "video_grounding": 1} and manifest.num_rejected == 0
    (folder_meta, [folder_frames]), (list_meta, [list_frames]) = stored_samples(out)

    size = video_frame_size(60, 80, 5, VideoSettings())
    np.testing.assert_array_equal(np.stack(folder_frames), resize_frames(np.stack(frames), size))
    files = b"".join((raw / "clip" / f"{index:03d}.png").read_bytes() for index in range(5))
    assert folder_meta.videos == [SampleVideo(num_frames=5, height=size[0], width=size[1], orig_height=60,
                                              orig_width=80, fps=1.0, duration=5.0,
                                              sha256=hashlib.sha256(files).hexdigest())]
    size = video_frame_size(60, 80, 3, VideoSettings())
    np.testing.assert_array_equal(np.stack(list_frames), resize_frames(np.stack(frames)[[4, 0, 2]], size))
    assert (list_meta.videos[0].fps, list_meta.videos[0].duration) == (2.0, 1.5)
    assert list_meta.segments[-1] == {"text": "0.5 - 1.5 seconds", "loss": True}


def test_videos_among_images_in_interleaved_and_cot_documents(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    encode_video(raw / "a.mp4", frames=20, fps=10)
    encode_video(raw / "b.mp4", frames=8, fps=4, height=64, width=48)
    Image.fromarray(frame_pixels(3, 60, 80)).save(raw / "picture.png")
    write_jsonl(raw / "mixed.jsonl", [
        {"kind": "interleaved", "content": [{"text": "First"}, {"video": "a.mp4"}, {"image": "picture.png"},
                                            {"video": "b.mp4"}, {"text": "last."}]},
        {"kind": "cot", "images": ["picture.png"], "videos": ["b.mp4"], "question": "q", "thinking": "t",
         "answer": "a"},
    ])
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw / "mixed.jsonl", "--out", out, "--workers", 1)
    assert manifest.kinds == {"interleaved": 1, "cot": 1} and manifest.num_images == 2
    (interleaved, interleaved_frames), (cot, cot_frames) = stored_samples(out)
    assert [(video.orig_height, video.orig_width, video.num_frames) for video in interleaved.videos] == [
        (48, 64, 4), (64, 48, 4)]
    assert [segment for segment in interleaved.segments if "video" in segment or "image" in segment] == [
        {"video": 0}, {"image": 0}, {"video": 1}]
    assert cot.segments[:3] == [{"image": 0}, {"video": 0}, {"text": "q\n", "loss": False}]
    np.testing.assert_array_equal(np.stack(cot_frames[0]), np.stack(interleaved_frames[1]))


def test_webdataset_keys_with_one_video_member(tmp_path):
    encode_video(tmp_path / "clip.mp4", frames=12, fps=6)
    source = tmp_path / "web"
    source.mkdir()
    with tarfile.open(source / "videos.tar", "w") as tar:
        for name, payload in [("k1.mp4", (tmp_path / "clip.mp4").read_bytes()), ("k1.txt", b"A bar moves."),
                              ("k2.json", b'{"kind": "video_caption", "video": ["0.png", "1.png"], "caption": "x"}')]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "out"
    manifest = run_ingest("--input", source / "videos.tar", "--out", out, "--workers", 1, "--kind", "video_caption")
    [(meta, [frames])] = stored_samples(out)
    assert meta.segments[-1] == {"text": "A bar moves.", "loss": True} and len(frames) == 4
    assert manifest.rejects == {"missing_video": 1}


BAD_VIDEO_LINES = [
    ({"kind": "video_caption", "video": "good.mp4", "caption": "kept"}, None),
    ({"kind": "video_caption", "video": "nope.mp4", "caption": "x"}, "missing_video"),
    ({"kind": "video_caption", "video": "half.mp4", "caption": "x"}, "unreadable_video"),
    ({"kind": "video_caption", "video": "half_faststart.mp4", "caption": "x"}, "unreadable_video"),
    ({"kind": "video_caption", "video": "garbage.mp4", "caption": "x"}, "unreadable_video"),
    ({"kind": "video_caption", "video": ["frames/000.png", "bad/broken.png"], "caption": "x"}, "unreadable_video"),
    ({"kind": "video_caption", "video": "audio.mp4", "caption": "x"}, "no_video_stream"),
    ({"kind": "video_caption", "video": "one_frame.mp4", "caption": "x"}, "no_video_frames"),
    ({"kind": "video_caption", "video": ["frames/000.png"], "caption": "x"}, "no_video_frames"),
    ({"kind": "video_caption", "video": "mixed/", "caption": "x"}, "mixed_frame_sizes"),
    ({"kind": "video_caption", "video": "long.mp4", "caption": "x"}, "video_too_long"),
    ({"kind": "video_caption", "video": "long.mkv", "caption": "x"}, "video_too_long"),
    ({"kind": "video_caption", "video": "frames/", "fps": 0.5, "caption": "x"}, "video_too_long"),
    ({"kind": "video_caption", "video": "many/", "caption": "x"}, "video_too_long"),
    ({"kind": "video_grounding", "video": "good.mp4", "query": "q", "spans": [[1, 3.5]]}, "span_outside_video"),
    ({"kind": "video_grounding", "video": "good.mp4", "query": "q", "spans": [[1, 3]]}, None),
    ({"kind": "video_caption", "video": "frames/", "caption": "folder"}, None),
    ({"kind": "interleaved", "content": [{"text": "t"}, {"video": "good.mp4"}, {"video": "audio.mp4"}]},
     "no_video_stream"),
    ({"kind": "text", "text": "plain"}, None),
]


def test_every_video_reject_reason_is_logged_and_counted_and_no_good_record_is_lost(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    encode_video(raw / "good.mp4", frames=30, fps=10)
    encode_video(raw / "long.mp4", frames=24, fps=2)  # 12 s, over --video-max-seconds 10
    encode_video(raw / "long.mkv", frames=24, fps=2, codec="mpeg4", container="matroska")  # no frame count: its duration
    encode_video(raw / "one_frame.mp4", frames=1, fps=10)
    complete = (raw / "good.mp4").read_bytes()
    (raw / "half.mp4").write_bytes(complete[: len(complete) // 2])  # its index (moov) is at the end: lost
    encode_video(raw / "faststart.mp4", frames=30, fps=10, options={"movflags": "faststart"})
    complete = (raw / "faststart.mp4").read_bytes()
    (raw / "half_faststart.mp4").write_bytes(complete[: len(complete) // 2])  # fails part-way through decoding
    (raw / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video" * 10)
    audio_only_file(raw / "audio.mp4")
    write_frames(raw / "frames", [(48, 64)] * 6)  # 3 s at the default 2 fps, 12 s at 0.5 fps
    (raw / "bad").mkdir()
    (raw / "bad" / "broken.png").write_bytes(b"\x89PNG cut")
    write_frames(raw / "mixed", [(48, 64), (48, 64), (64, 48)])
    write_frames(raw / "many", [(28, 28)] * 9)  # more than --video-max-frames 8
    write_jsonl(raw / "videos.jsonl", [record for record, _ in BAD_VIDEO_LINES])
    out = tmp_path / "out"
    manifest = run_ingest("--input", raw / "videos.jsonl", "--out", out, "--workers", 2,
                          "--video-max-seconds", 10, "--video-max-frames", 8)

    logged = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    expected = {line: reason for line, (_, reason) in enumerate(BAD_VIDEO_LINES, start=1) if reason}
    assert {entry["line"]: entry["reason"] for entry in logged} == expected
    assert all(entry["detail"] for entry in logged)
    assert set(expected.values()) == VIDEO_REJECTS
    counts = {reason: list(expected.values()).count(reason) for reason in VIDEO_REJECTS}
    assert manifest.rejects == counts
    kept = [line for line, (_, reason) in enumerate(BAD_VIDEO_LINES, start=1) if reason is None]
    samples = stored_samples(out)
    assert [meta.source["line"] for meta, _ in samples] == kept
    assert [meta.segments[-1]["text"] for meta, _ in samples] == ["kept", "1.0 - 3.0 seconds", "folder", "plain"]
    summary = capsys.readouterr().out
    assert f"ingested 4 of {len(BAD_VIDEO_LINES)} documents (0 images, 3 videos)" in summary
    assert all(reason in summary for reason in VIDEO_REJECTS)


def test_merge_refuses_outputs_ingested_with_other_video_settings(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "text.jsonl", [{"kind": "text", "text": "Hello."}])
    for name, fps in (("a", 2), ("b", 2), ("c", 1)):
        run_ingest("--input", raw / "text.jsonl", "--out", tmp_path / name, "--workers", 1, "--video-fps", fps)
    merged = json.loads(merge_ingested([tmp_path / "a", tmp_path / "b"]).manifest_text)
    assert merged["video_settings"] == VideoSettings().to_dict()
    with pytest.raises(ValueError, match="ingested with another video_settings"):
        merge_ingested([tmp_path / "a", tmp_path / "c"])
