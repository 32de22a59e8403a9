"""Sample shards read back: samples in order with their images; malformed ones refused naming shard and key."""

import pytest

from data_prep.sample_shards.reader import index_shard, iter_shard
from data_prep.sample_shards.sample_meta import SampleImage, SampleMeta, SampleVideo, sample_members
from data_prep.sample_shards.writer import SampleShardWriter, ShardLimit

IMAGE = SampleImage(height=28, width=28, orig_height=30, orig_width=29, sha256="ab" * 32)


def video(num_frames: int) -> SampleVideo:
    return SampleVideo(num_frames=num_frames, height=28, width=56, orig_height=40, orig_width=80, fps=2.0,
                       duration=num_frames / 2, sha256="cd" * 32)


def video_meta(frames: list[int]) -> SampleMeta:
    return SampleMeta(kind="video_caption", source={"file": "raw.jsonl", "line": 2}, images=[],
                      videos=[video(n) for n in frames],
                      segments=[{"video": k} for k in range(len(frames))] + [{"text": "a clip", "loss": True}])


def meta(images: int) -> SampleMeta:
    segments = [{"image": k} for k in range(images)] + [{"text": "a caption", "loss": True}]
    return SampleMeta(kind="caption", source={"file": "raw.jsonl", "line": 1}, images=[IMAGE] * images,
                      segments=segments)


def write(directory, samples: list[tuple[str, dict[str, bytes]]]) -> str:
    writer = SampleShardWriter(str(directory), ShardLimit(samples=100))
    for key, members in samples:
        writer.write(key, members)
    return str(directory / writer.close()[0].name)


def test_samples_read_back_with_their_images_in_order(tmp_path):
    pngs = [b"\x89PNG first", b"\x89PNG second, longer than the first"]
    path = write(tmp_path, [("000000000", sample_members(meta(2), pngs)), ("000000001", sample_members(meta(0), []))])
    records = list(iter_shard(path))
    assert [record.key for record in records] == ["000000000", "000000001"]
    assert records[0].meta == meta(2) and records[0].images == pngs
    assert records[1].images == []
    assert [len(sample.image_spans) for sample in index_shard(path)] == [2, 0]


def test_video_frames_read_back_per_video_in_order(tmp_path):
    frames = [[b"\x89PNG v0 f0", b"\x89PNG v0 f1", b"\x89PNG v0 f2"], [b"\x89PNG v1 f0", b"\x89PNG v1 f1 longer"]]
    path = write(tmp_path, [("000000000", sample_members(video_meta([3, 2]), [], frames))])
    [record] = iter_shard(path)
    assert record.meta == video_meta([3, 2]) and record.videos == frames and record.images == []
    [indexed] = index_shard(path)
    assert [len(spans) for spans in indexed.video_spans] == [3, 2]


def test_video_frames_that_do_not_match_the_json_are_refused(tmp_path):
    path = write(tmp_path, [("000000000", sample_members(video_meta([3]), [], [[b"\x89PNG f0", b"\x89PNG f1"]]))])
    with pytest.raises(ValueError, match=r"sample 000000000 has video frame members .* videos of \[3\] frames"):
        list(index_shard(path))


@pytest.mark.parametrize("members, message", [
    ({"img0.png": b"png"}, r"sample 000000000 has no 000000000\.json member"),
    ({"json": meta(2).to_json(), "img0.png": b"png"}, r"has image members \[0\] but its JSON lists 2 images"),
    ({"json": meta(0).to_json(), "txt": b"caption"}, r"unexpected member 000000000\.txt"),
    ({"json": b'{"kind": "caption"}'}, r"sample 000000000: its JSON has missing or unknown fields"),
    ({"json": meta(0).to_json().replace(b'"caption"', b'"video"')}, r"sample 000000000: .*kind='video'"),
])
def test_a_malformed_sample_is_refused_naming_shard_and_key(tmp_path, members, message):
    path = write(tmp_path, [("000000000", members)])
    with pytest.raises(ValueError, match=r"samples-000000\.tar: .*" + message):
        list(index_shard(path))
