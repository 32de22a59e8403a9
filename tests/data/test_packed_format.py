"""Reading packed shards: members round-trip, random access, manifest validation, damage found."""

import json

import numpy as np
import pytest

from data_prep.pack.packed_shard_writer import packed_sample_members
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.packed_format import PackedDataset, PackedSample, index_name, shard_name
from megatron_vl.data.packed_manifest import PackedManifest
from tests.data.packed_samples import SEQ_LEN, assert_same, make_sample, make_video_sample, write_dataset


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("packed"))


def test_members_round_trip():
    sample = make_sample(1)
    members = packed_sample_members(sample)
    assert list(members)[:6] == ["tokens.npy", "labels.npy", "loss_mask.npy", "position_ids.npy", "seq_lens.npy",
                                 "meta.json"]
    assert_same(PackedSample.from_tar_members(members), sample)
    np.testing.assert_array_equal(sample.cu_seqlens, [0, sample.seq_lens[0], SEQ_LEN - 3])


def test_video_members_round_trip():
    sample = make_video_sample(2)
    members = packed_sample_members(sample)
    assert [name for name in members if name.startswith("vid")] == [
        "vid0.00000.png", "vid0.00001.png", "vid0.00002.png",
        "vid1.00000.png", "vid1.00001.png", "vid1.00002.png", "vid1.00003.png"]
    meta = json.loads(members["meta.json"])
    assert meta["video_grid_thw"] == [[2, 2, 2], [2, 4, 6]] and meta["video_frames"] == [3, 4]
    assert meta["second_per_grid_ts"] == [1.0, 2 / 3] and meta["documents"][0]["num_videos"] == 2
    assert_same(PackedSample.from_tar_members(members), sample)


def test_shards_from_before_videos_still_read():
    sample = make_sample(3)
    members = packed_sample_members(sample)
    meta = json.loads(members["meta.json"])
    for name in ("video_grid_thw", "second_per_grid_ts", "video_frames"):
        del meta[name]
    for document in meta["documents"]:
        del document["num_videos"]
    members["meta.json"] = json.dumps(meta).encode()
    old = PackedSample.from_tar_members(members)
    assert old.videos == [] and old.video_grid_thw == [] and old.second_per_grid_ts == []
    assert_same(old, sample)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("vid1.00003.png"), r"video frame members .* do not match meta.json's video_frames \[3, 4\]"),
    (lambda m: m.update({"vid2.00000.png": m["vid0.00000.png"]}), "do not match meta.json's video_frames"),
])
def test_video_frames_missing_or_extra_are_refused(change, message):
    members = packed_sample_members(make_video_sample(4))
    change(members)
    with pytest.raises(ValueError, match=message):
        PackedSample.from_tar_members(members)


def test_random_access_reads_every_sample(dataset_dir):
    dataset = PackedDataset(dataset_dir)
    assert len(dataset) == 5 and dataset.shard_sizes == [3, 2]
    assert_same(dataset.read(1, 1), make_sample(11))
    assert_same(dataset[2], make_sample(2))
    assert_same(dataset[3], make_sample(10))
    with pytest.raises(IndexError):
        dataset[5]


def test_manifest_round_trip_and_validation(dataset_dir, tmp_path):
    manifest = PackedManifest.load(dataset_dir)
    assert manifest.to_json() == (dataset_dir / "manifest.json").read_text()
    assert PackedManifest.from_json(manifest.to_json()) == manifest
    fields = json.loads(manifest.to_json())
    for change, message in (({"num_samples": 9}, "num_samples"), ({"padding_fraction": 0.5}, "padding_fraction"),
                            ({"format_version": 99}, "format version"), ({"seq_len": 0}, "seq_len"),
                            ({"pack_settings": {**fields["pack_settings"], "long_doc": "cut"}}, "long_doc")):
        with pytest.raises(ValueError, match=message):
            PackedManifest.from_json(json.dumps({**fields, **change}))
    (tmp_path / "manifest.json").write_text(json.dumps({**fields, "colour": "red"}))
    with pytest.raises(ValueError, match="unknown fields"):
        PackedManifest.load(tmp_path)
    with pytest.raises(ValueError, match="not a .*packed dataset"):
        PackedManifest.load(tmp_path / "nowhere")


def test_training_refuses_a_mismatched_dataset(dataset_dir):
    manifest = PackedManifest.load(dataset_dir)
    run = dict(seq_len=SEQ_LEN, tokenizer_fingerprint="abc", image_settings=ImageSettings(), tokens_per_second=2)
    manifest.check_compatible(**run)
    with pytest.raises(ValueError, match="seq_len"):
        manifest.check_compatible(**{**run, "seq_len": 64})
    with pytest.raises(ValueError, match="tokenizer_fingerprint"):
        manifest.check_compatible(**{**run, "tokenizer_fingerprint": "xyz"})
    with pytest.raises(ValueError, match=r"'min_pixels': \(3136, 1\)"):
        manifest.check_compatible(**{**run, "image_settings": ImageSettings(min_pixels=1)})
    with pytest.raises(ValueError, match=r"count 2 per second but the model's vision.tokens_per_second is 4; re-pack "
                                         r"the data with `python -m data_prep pack --tokens-per-second 4`"):
        manifest.check_compatible(**{**run, "tokens_per_second": 4})


def test_a_manifest_from_before_videos_counts_two_time_positions_per_second(dataset_dir):
    values = json.loads((dataset_dir / "manifest.json").read_text())
    del values["pack_settings"]["tokens_per_second"]
    for stats in values["tokens_per_kind"].values():
        del stats["video_tokens"], stats["videos"]
    manifest = PackedManifest.from_json(json.dumps(values))
    assert manifest.pack_settings.tokens_per_second == 2
    assert manifest.tokens_per_kind == PackedManifest.load(dataset_dir).tokens_per_kind


def test_damaged_sample_is_refused_with_its_name():
    members = packed_sample_members(make_sample(0))
    with pytest.raises(ValueError, match="shard 3 sample 7.*missing"):
        PackedSample.from_tar_members({k: v for k, v in members.items() if k != "labels.npy"},
                                      where="shard 3 sample 7")
    meta = json.loads(members["meta.json"])
    members["meta.json"] = json.dumps({**meta, "num_padding": 4}).encode()
    with pytest.raises(ValueError, match="padding"):
        PackedSample.from_tar_members(members)
    members["meta.json"] = json.dumps({**meta, "documents": [{"kind": "text"}]}).encode()
    with pytest.raises(ValueError, match="a document record has missing or unknown fields"):
        PackedSample.from_tar_members(members)


def test_index_that_does_not_match_the_shard_is_detected(dataset_dir, tmp_path):
    for path in dataset_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    offsets = np.load(tmp_path / index_name(shard_name(0)))
    for wrong in (offsets[0], offsets[2]):
        np.save(tmp_path / index_name(shard_name(0)), np.array([offsets[0], wrong, *offsets[2:]]))
        with pytest.raises(ValueError, match="offsets index does not match"):
            PackedDataset(tmp_path).read(0, 1)
