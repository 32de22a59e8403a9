"""The one tar writer of data_prep: reproducible bytes, predicted sizes, atomic appearance."""

import hashlib
import tarfile

import pytest

from data_prep.webdataset_tar import TarShardWriter, iter_keyed_members, sample_size, tar_file_size

SAMPLES = [
    ("000", {"json": b'{"a": 1}', "img0.png": b"\x89PNG" + b"x" * 700}),
    ("001", {"json": b"{}"}),
]


def write(path):
    with TarShardWriter(path) as shard:
        for key, members in SAMPLES:
            shard.add_sample(key, members)
    return shard


def test_members_read_back_in_order_with_fixed_metadata(tmp_path):
    write(tmp_path / "a.tar")
    assert list(iter_keyed_members(str(tmp_path / "a.tar"))) == SAMPLES
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["000.json", "000.img0.png", "001.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_same_samples_give_the_same_bytes_and_the_counted_size_and_digest(tmp_path):
    first, second = write(tmp_path / "a.tar"), write(tmp_path / "b.tar")
    data = (tmp_path / "a.tar").read_bytes()
    assert data == (tmp_path / "b.tar").read_bytes()
    assert (first.size, first.sha256) == (second.size, second.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert len(data) == tar_file_size(sum(sample_size(members) for _, members in SAMPLES))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.tar", "b.tar"]


def test_an_error_while_writing_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with TarShardWriter(tmp_path / "a.tar") as shard:
            shard.add_sample(*SAMPLES[0])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
