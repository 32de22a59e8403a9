import json

import pytest

from data_prep.sample_shards import SampleShardWriter, ShardLimit, index_shard, iter_shard, sample_members


def _meta(images: int) -> dict:
    return {"kind": "caption", "images": [{"height": 28, "width": 28}] * images, "segments": []}


def _write(directory, samples: list[tuple[str, dict[str, bytes]]]) -> str:
    writer = SampleShardWriter(str(directory), ShardLimit(samples=100))
    for key, members in samples:
        writer.write(key, members)
    return str(directory / writer.close()[0]["name"])


def test_samples_read_back_with_their_images_in_order(tmp_path):
    pngs = [b"\x89PNG first", b"\x89PNG second, longer than the first"]
    path = _write(tmp_path, [("000000000", sample_members(_meta(2), pngs)), ("000000001", sample_members(_meta(0), []))])
    records = list(iter_shard(path))
    assert [record.key for record in records] == ["000000000", "000000001"]
    assert records[0].meta == _meta(2) and records[0].images == pngs
    assert records[1].images == []
    assert [len(sample.image_spans) for sample in index_shard(path)] == [2, 0]


@pytest.mark.parametrize("members, message", [
    ({"img0.png": b"png"}, r"sample 000000000 has no 000000000\.json member"),
    ({"json": json.dumps(_meta(2)).encode(), "img0.png": b"png"}, r"has image members \[0\] but its JSON lists 2 images"),
    ({"json": json.dumps(_meta(0)).encode(), "txt": b"caption"}, r"unexpected member 000000000\.txt"),
])
def test_a_malformed_sample_is_refused_naming_shard_and_key(tmp_path, members, message):
    path = _write(tmp_path, [("000000000", members)])
    with pytest.raises(ValueError, match=r"samples-000000\.tar: .*" + message):
        list(index_shard(path))
