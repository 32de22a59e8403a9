"""Micro-batch fields: packed arrays passed through, cu_seqlens from document lengths, HF's patches."""

import itertools

import numpy as np
import torch

from megatron_vl.data.batch import build_batch
from megatron_vl.data.images import ImageSettings, load_image, patchify
from megatron_vl.data.packed_format import PackedDataset, PackedSample
from megatron_vl.data.train_loader import TrainLoader
from tests.data.packed_samples import packed_document


def test_batch_fields_come_from_the_packed_samples(packed_corpus):
    config = packed_corpus.config()
    loader = TrainLoader(config, tokenizer_fingerprint=packed_corpus.tokenizer_fingerprint)
    datasets = [PackedDataset(entry.path) for entry in config.blend]
    batches = list(itertools.islice(loader, 4))
    assert {dataset for batch in batches for dataset, _ in batch.sample_ids} == {0, 1}
    for batch in batches:
        samples = [datasets[dataset][index] for dataset, index in batch.sample_ids]
        assert batch.tokens.dtype == batch.labels.dtype == batch.position_ids.dtype == torch.int64
        assert batch.loss_mask.dtype == batch.pixel_values.dtype == torch.float32
        assert batch.cu_seqlens.dtype == torch.int32 and batch.image_grid_thw.dtype == torch.int64
        for row, sample in enumerate(samples):
            np.testing.assert_array_equal(batch.tokens[row].numpy(), sample.tokens)
            np.testing.assert_array_equal(batch.labels[row].numpy(), sample.labels)
            np.testing.assert_array_equal(batch.loss_mask[row].numpy(), sample.loss_mask)
            np.testing.assert_array_equal(batch.position_ids[:, row].numpy(), sample.position_ids)
        segments = [n for sample in samples for n in [*sample.seq_lens.tolist(), sample.num_padding] if n]
        assert batch.cu_seqlens.tolist() == np.cumsum([0, *segments]).tolist()
        assert batch.max_seqlen == max(segments)
        images = [png for sample in samples for png in sample.images]
        expected = [patchify(np.asarray(load_image(png)), config.image_settings) for png in images]
        assert torch.equal(batch.pixel_values, torch.from_numpy(np.concatenate([p for p, _ in expected])))
        assert batch.image_grid_thw.tolist() == [list(grid) for _, grid in expected]
        kinds = {}
        for document in (d for sample in samples for d in sample.documents):
            kinds[document.kind] = kinds.get(document.kind, 0) + document.loss_tokens
        assert batch.loss_tokens_per_kind == {kind: n for kind, n in kinds.items() if n}
        assert batch.num_loss_tokens == int(batch.loss_mask.sum())


def test_padding_tail_is_its_own_segment_and_text_only_rows_have_no_patches():
    def row(seq_lens, padding):
        size = sum(seq_lens) + padding
        return PackedSample(
            tokens=np.arange(size, dtype=np.int32), labels=np.zeros(size, np.int32),
            loss_mask=(np.arange(size) < sum(seq_lens)).astype(np.uint8), position_ids=np.zeros((3, size), np.int32),
            seq_lens=np.array(seq_lens, np.int32), images=[], image_grid_thw=[],
            documents=[packed_document("text", n) for n in seq_lens], num_padding=padding,
        )

    patch_dim = ImageSettings().patch_dim
    batch = build_batch([row([5, 3], 2), row([10], 0)], [], [(0, 0), (0, 1)], patch_dim)
    assert batch.cu_seqlens.tolist() == [0, 5, 8, 10, 20]
    assert batch.max_seqlen == 10
    assert batch.pixel_values.shape == (0, patch_dim) and batch.image_grid_thw.shape == (0, 3)
    assert batch.pixel_values_videos.shape == (0, patch_dim) and batch.video_grid_thw.shape == (0, 3)
    assert batch.second_per_grid_ts.shape == (0,)

    video = np.arange(2 * 16 * patch_dim, dtype=np.float32).reshape(32, patch_dim)
    with_video = build_batch(
        [row([5, 3], 2)], [], [(0, 0)], patch_dim, video_patches=[video], video_grids=[(2, 4, 4)],
        second_per_grid_ts=[0.5],
    )
    assert torch.equal(with_video.pixel_values_videos, torch.from_numpy(video))
    assert with_video.video_grid_thw.tolist() == [[2, 4, 4]] and with_video.second_per_grid_ts.tolist() == [0.5]
    assert batch.loss_tokens_per_kind == {"text": 18}
