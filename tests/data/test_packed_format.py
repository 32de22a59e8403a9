"""Packed shards: members round-trip, reproducible bytes, random access, manifest validation."""

import dataclasses
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from megatron_vl.data.packed_format import (
    KindStats,
    PackedDataset,
    PackedManifest,
    PackedSample,
    index_name,
    sample_key,
    shard_name,
    write_shard,
)

SEQ_LEN = 32


def png(height, width, color):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_sample(seed):
    rng = np.random.default_rng(seed)
    first = int(rng.integers(5, 20))
    seq_lens = np.array([first, SEQ_LEN - first - 3], dtype=np.int32)
    tokens = rng.integers(0, 100, SEQ_LEN).astype(np.int32)
    return PackedSample(
        tokens=tokens,
        labels=np.roll(tokens, -1),
        loss_mask=(rng.random(SEQ_LEN) < 0.5).astype(np.uint8),
        position_ids=np.tile(np.arange(SEQ_LEN, dtype=np.int32), (3, 1)),
        seq_lens=seq_lens,
        images=[png(28, 56, (seed, 0, 0)), png(56, 28, (0, seed, 0))],
        image_grid_thw=[(1, 2, 4), (1, 4, 2)],
        documents=[{"kind": "caption", "length": int(n)} for n in seq_lens],
        num_padding=3,
    )


def assert_same(a: PackedSample, b: PackedSample):
    for field in dataclasses.fields(PackedSample):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, field.name


def make_manifest(entries, samples_per_shard):
    num_samples = sum(samples_per_shard)
    tokens = num_samples * (SEQ_LEN - 3)
    return PackedManifest(
        seq_len=SEQ_LEN, tokenizer_fingerprint="abc", special_ids={"<|image_pad|>": 7}, pad_id=0,
        image_settings={"min_pixels": 3136}, pack_settings={"seed": 0}, sources=[], shards=entries,
        num_samples=num_samples, num_documents=2 * num_samples,
        tokens_per_kind={"caption": KindStats(documents=2 * num_samples, tokens=tokens)},
        padding_fraction=3 / SEQ_LEN, dropped={}, split_documents=0,
        document_length_histogram={"edges": [1, SEQ_LEN + 1], "counts": [2 * num_samples]},
    )


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("packed")
    entries = [
        write_shard(directory / shard_name(s), [(sample_key(s, i), make_sample(10 * s + i)) for i in range(n)])
        for s, n in enumerate([3, 2])
    ]
    make_manifest(entries, [3, 2]).save(directory)
    return directory


def test_members_round_trip():
    sample = make_sample(1)
    members = sample.to_tar_members()
    assert list(members)[:6] == ["tokens.npy", "labels.npy", "loss_mask.npy", "position_ids.npy", "seq_lens.npy",
                                 "meta.json"]
    assert_same(PackedSample.from_tar_members(members), sample)
    np.testing.assert_array_equal(sample.cu_seqlens, [0, sample.seq_lens[0], SEQ_LEN - 3])


def test_random_access_reads_every_sample(dataset_dir):
    dataset = PackedDataset(dataset_dir)
    assert len(dataset) == 5 and dataset.shard_sizes == [3, 2]
    assert_same(dataset.read(1, 1), make_sample(11))
    assert_same(dataset[2], make_sample(2))
    assert_same(dataset[3], make_sample(10))
    with pytest.raises(IndexError):
        dataset[5]


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


def test_manifest_round_trip_and_validation(dataset_dir, tmp_path):
    manifest = PackedManifest.load(dataset_dir)
    assert manifest.to_json() == (dataset_dir / "manifest.json").read_text()
    fields = json.loads(manifest.to_json())
    with pytest.raises(ValueError, match="num_samples"):
        PackedManifest(**{**fields, "num_samples": 9})
    with pytest.raises(ValueError, match="padding_fraction"):
        PackedManifest(**{**fields, "padding_fraction": 0.5})
    with pytest.raises(ValueError, match="format version"):
        PackedManifest(**{**fields, "format_version": 99})
    (tmp_path / "manifest.json").write_text(json.dumps({**fields, "colour": "red"}))
    with pytest.raises(ValueError, match="unknown fields"):
        PackedManifest.load(tmp_path)
    with pytest.raises(ValueError, match="not a .*packed dataset"):
        PackedManifest.load(tmp_path / "nowhere")


def test_training_refuses_a_mismatched_dataset(dataset_dir):
    manifest = PackedManifest.load(dataset_dir)
    manifest.check_compatible(seq_len=SEQ_LEN, tokenizer_fingerprint="abc", image_settings={"min_pixels": 3136})
    with pytest.raises(ValueError, match="seq_len"):
        manifest.check_compatible(seq_len=64, tokenizer_fingerprint="abc", image_settings={})
    with pytest.raises(ValueError, match="tokenizer_fingerprint"):
        manifest.check_compatible(seq_len=SEQ_LEN, tokenizer_fingerprint="xyz", image_settings={})
    with pytest.raises(ValueError, match="min_pixels"):
        manifest.check_compatible(seq_len=SEQ_LEN, tokenizer_fingerprint="abc", image_settings={"min_pixels": 1})


def test_damaged_sample_is_refused_with_its_name():
    members = make_sample(0).to_tar_members()
    with pytest.raises(ValueError, match="shard 3 sample 7.*missing"):
        PackedSample.from_tar_members({k: v for k, v in members.items() if k != "labels.npy"},
                                      where="shard 3 sample 7")
    meta = json.loads(members["meta.json"])
    members["meta.json"] = json.dumps({**meta, "num_padding": 4}).encode()
    with pytest.raises(ValueError, match="padding"):
        PackedSample.from_tar_members(members)


def test_index_that_does_not_match_the_shard_is_detected(dataset_dir, tmp_path):
    for path in dataset_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    offsets = np.load(tmp_path / index_name(shard_name(0)))
    for wrong in (offsets[0], offsets[2]):
        np.save(tmp_path / index_name(shard_name(0)), np.array([offsets[0], wrong, *offsets[2:]]))
        with pytest.raises(ValueError, match="offsets index does not match"):
            PackedDataset(tmp_path).read(0, 1)
