"""Writing packed shards: plain webdataset tars, reproducible to the byte, with their offsets index."""

import tarfile

import pytest

from data_prep.pack.packed_shard_writer import write_shard
from megatron_vl.data.packed_format import sample_key, shard_name
from megatron_vl.data.packed_manifest import PackedManifest
from tests.data.packed_samples import make_sample, write_dataset


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("packed"))


def test_shard_is_a_plain_webdataset_tar_with_fixed_metadata(dataset_dir):
    with tarfile.open(dataset_dir / shard_name(0)) as tar:
        members = tar.getmembers()
    assert members[0].name == "000000-000000.tokens.npy"
    assert members[-1].name == "000000-000002.img1.png"
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_same_samples_give_the_same_bytes(dataset_dir, tmp_path):
    entry = write_shard(tmp_path / shard_name(0), [(sample_key(0, i), make_sample(i)) for i in range(3)])
    assert (tmp_path / shard_name(0)).read_bytes() == (dataset_dir / shard_name(0)).read_bytes()
    assert entry == PackedManifest.load(dataset_dir).shards[0]
    assert not list(tmp_path.glob("*.tmp"))
