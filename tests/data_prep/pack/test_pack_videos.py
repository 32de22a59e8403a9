"""pack, verify and the loaders on videos: video captions and interleaved image + video documents end to end."""

import json

import numpy as np
import pytest
import torch

from data_prep.__main__ import main
from data_prep.inspect.verify import verify_dataset
from data_prep.pack.command import PackOptions, pack
from data_prep.sample_shards.reader import iter_dataset
from megatron_vl.config.data import DataConfig
from megatron_vl.data.eval_loader import EvalLoader
from megatron_vl.data.images import load_image
from megatron_vl.data.packed_format import PackedDataset
from megatron_vl.data.packed_manifest import PackedManifest
from megatron_vl.data.train_loader import TrainLoader
from megatron_vl.data.videos import VideoSettings, patchify_video
from megatron_vl.tokenizer import load_tokenizer
from tests.data.rope_oracle import oracle, tiny_hf_model
from tests.data_prep.sample_corpus import SEQ_LEN, make_video_samples, train_tokenizer, write_sample_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-corpus")
    tokenizer = train_tokenizer(root / "tokenizer")
    inputs = [str(write_sample_dataset(root / "input", make_video_samples(np.random.default_rng(3), 24)))]
    return {"root": root, "tokenizer": tokenizer, "inputs": inputs}


def packed_with(corpus, name, **overrides):
    out = corpus["root"] / name
    values = dict(inputs=corpus["inputs"], tokenizer=corpus["tokenizer"], out=str(out), seq_len=SEQ_LEN, window=40,
                  shard_size=3, workers=1)
    pack(PackOptions(**{**values, **overrides}), progress=False)
    return out


@pytest.fixture(scope="module")
def packed(corpus):
    return packed_with(corpus, "packed")


def documents_of(sample):
    """(start, end, record, image grids, video grids, seconds per temporal patch, video frames) of each document."""
    images, videos = iter(sample.image_grid_thw), iter(zip(sample.video_grid_thw, sample.second_per_grid_ts,
                                                            sample.videos))
    cu = sample.cu_seqlens.tolist()
    for start, end, record in zip(cu[:-1], cu[1:], sample.documents):
        document_images = [next(images) for _ in range(record.num_images)]
        document_videos = [next(videos) for _ in range(record.num_videos)]
        yield (start, end, record, document_images, [grid for grid, _, _ in document_videos],
               [seconds for _, seconds, _ in document_videos], [frames for _, _, frames in document_videos])


def test_videos_pack_into_a_valid_dataset_and_an_over_long_one_is_dropped(packed):
    manifest = PackedManifest.load(packed)
    assert verify_dataset(packed, deep=True, progress=False) == []
    assert manifest.dropped == {"video_longer_than_seq_len": 1}
    assert manifest.split_documents == 1
    assert manifest.pack_settings.tokens_per_second == 2
    stats = manifest.tokens_per_kind
    assert set(stats) == {"video_caption", "interleaved", "text"}
    # 8 video captions (the over-long one dropped); 8 interleaved documents of 2 videos, plus the split one's video.
    assert stats["video_caption"].videos == 8 and stats["interleaved"].videos == 17
    assert stats["interleaved"].images == 8 and stats["text"].videos == stats["text"].video_tokens == 0
    assert stats["video_caption"].video_tokens > 0 and stats["video_caption"].image_tokens == 0


def test_documents_keep_their_videos_frames_and_time_scale(corpus, packed):
    sources = {(shard, record.key): record for shard, record in iter_dataset(corpus["inputs"][0])}
    seen = 0
    dataset = PackedDataset(packed)
    for i in range(len(dataset)):
        for _, _, record, _, grids, seconds, frames in documents_of(dataset[i]):
            source = sources[(record.source.shard, record.source.key)]
            if record.part != (1, 1):
                continue  # a part holds some of its sample's videos; the whole-document cases cover the mapping
            assert frames == source.videos
            assert seconds == [2 / video.fps for video in source.meta.videos]
            assert grids == [(-(-video.num_frames // 2), video.height // 14, video.width // 14)
                             for video in source.meta.videos]
            seen += len(frames)
    assert seen == 8 + 16


def test_positions_of_packed_documents_match_get_rope_index(corpus, packed):
    tokenizer = load_tokenizer(corpus["tokenizer"])
    hf_model = tiny_hf_model(tokens_per_second=2)
    dataset = PackedDataset(packed)
    videos = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        for start, end, _, images, grids, seconds, _ in documents_of(sample):
            expected = oracle(hf_model, sample.tokens[start:end], images, image_pad_id=tokenizer.image_pad_id,
                              video_grids=grids, second_per_grid_ts=seconds, video_pad_id=tokenizer.video_pad_id)
            np.testing.assert_array_equal(sample.position_ids[:, start:end], expected)
            videos += len(grids)
    assert videos == 8 + 17


def test_tokens_per_second_is_recorded_and_decides_the_positions(corpus, tmp_path):
    out = tmp_path / "four"
    assert main(["pack", "--input", *corpus["inputs"], "--tokenizer", corpus["tokenizer"], "--out", str(out),
                 "--seq-len", str(SEQ_LEN), "--window", "40", "--shard-size", "3", "--workers", "1",
                 "--tokens-per-second", "4"]) == 0
    assert PackedManifest.load(out).pack_settings.tokens_per_second == 4
    assert verify_dataset(out, deep=True, progress=False) == []
    tokenizer = load_tokenizer(corpus["tokenizer"])
    hf_model = tiny_hf_model(tokens_per_second=4)
    sample = next(PackedDataset(out)[i] for i in range(len(PackedDataset(out))) if PackedDataset(out)[i].videos)
    for start, end, _, images, grids, seconds, _ in documents_of(sample):
        expected = oracle(hf_model, sample.tokens[start:end], images, image_pad_id=tokenizer.image_pad_id,
                          video_grids=grids, second_per_grid_ts=seconds, video_pad_id=tokenizer.video_pad_id)
        np.testing.assert_array_equal(sample.position_ids[:, start:end], expected)


def loader_config(packed, **overrides):
    values = dict(blend=[(str(packed), 1.0)], seq_len=SEQ_LEN, global_batch_size=4, micro_batch_size=2, seed=3,
                  num_workers=0)
    return DataConfig(**{**values, **overrides})


def test_loader_yields_the_patches_grids_and_time_of_the_stored_frames(corpus, packed):
    fingerprint = load_tokenizer(corpus["tokenizer"]).fingerprint
    dataset = PackedDataset(packed)
    loader = EvalLoader(loader_config(packed, eval_path=str(packed), micro_batch_size=1),
                        tokenizer_fingerprint=fingerprint)
    assert loader.num_dropped == 0
    settings = VideoSettings()
    checked = 0
    for batch in loader:
        samples = [dataset[index] for _, index in batch.sample_ids]
        frames = [video for sample in samples for video in sample.videos]
        expected = [patchify_video(np.stack([np.asarray(load_image(png)) for png in video]), settings)
                    for video in frames]
        assert batch.pixel_values_videos.dtype == torch.float32
        assert batch.pixel_values_videos.shape == (sum(len(p) for p, _ in expected), settings.patch_dim)
        assert torch.equal(batch.pixel_values_videos,
                           torch.from_numpy(np.concatenate([np.empty((0, settings.patch_dim), np.float32)]
                                                           + [p for p, _ in expected])))
        assert batch.video_grid_thw.dtype == torch.int64 and batch.video_grid_thw.shape == (len(frames), 3)
        assert batch.video_grid_thw.tolist() == [list(grid) for _, grid in expected]
        assert batch.second_per_grid_ts.dtype == torch.float32
        assert batch.second_per_grid_ts.tolist() == pytest.approx(
            [s for sample in samples for s in sample.second_per_grid_ts], rel=1e-7)
        assert int((batch.tokens == load_tokenizer(corpus["tokenizer"]).video_pad_id).sum()) == sum(
            t * h * w // 4 for t, h, w in batch.video_grid_thw.tolist())
        checked += len(frames)
        moved = batch.to("meta")
        assert moved.pixel_values_videos.device.type == "meta" and moved.second_per_grid_ts.shape == (len(frames),)
    assert checked == 8 + 17


def test_training_refuses_a_dataset_of_another_tokens_per_second(corpus, packed):
    fingerprint = load_tokenizer(corpus["tokenizer"]).fingerprint
    with pytest.raises(ValueError, match=r"count 2 per second but the model's vision.tokens_per_second is 4; "
                                         r"re-pack the data with `python -m data_prep pack --tokens-per-second 4`"):
        TrainLoader(loader_config(packed), tokenizer_fingerprint=fingerprint, tokens_per_second=4)
    with pytest.raises(ValueError, match="vision.tokens_per_second is 4"):
        EvalLoader(loader_config(packed, eval_path=str(packed)), tokenizer_fingerprint=fingerprint, tokens_per_second=4)


def test_a_resumed_loader_sees_the_same_video_batches(corpus, packed):
    fingerprint = load_tokenizer(corpus["tokenizer"]).fingerprint
    loader = TrainLoader(loader_config(packed), tokenizer_fingerprint=fingerprint)
    batches = iter(loader)
    next(batches), next(batches)
    state = json.loads(json.dumps(loader.state_dict()))
    after = [next(batches) for _ in range(4)]
    resumed = TrainLoader(loader_config(packed), tokenizer_fingerprint=fingerprint)
    resumed.load_state_dict(state)
    again = iter(resumed)
    for batch in after:
        other = next(again)
        assert other.sample_ids == batch.sample_ids
        for name in ("tokens", "position_ids", "pixel_values", "pixel_values_videos", "video_grid_thw",
                     "second_per_grid_ts"):
            assert torch.equal(getattr(other, name), getattr(batch, name)), name
    assert sum(len(batch.video_grid_thw) for batch in after) > 0
