"""Micro-batch fields: packed arrays passed through, cu_seqlens from document lengths, HF's patches."""

import itertools

import numpy as np
import pytest
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
    assert batch.pixel_values_videos.shape == (0, patch_dim) and batch.pixel_values_videos.dtype == torch.float32
    assert batch.video_grid_thw.shape == (0, 3) and batch.video_grid_thw.dtype == torch.int64
    assert batch.second_per_grid_ts.shape == (0,) and batch.second_per_grid_ts.dtype == torch.float32
    assert batch.loss_tokens_per_kind == {"text": 18}


def test_documents_are_padded_to_the_alignment_from_the_tail():
    size, pad = 16, 0
    tokens = np.array([7, 8, 9, 7, 8, 1, 2, 3, 4, 5] + [pad] * 6, np.int32)
    labels = np.array([8, 9, pad, 8, pad, 2, 3, 4, 5, pad] + [pad] * 6, np.int32)
    loss = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 0] + [0] * 6, np.uint8)
    positions = np.stack([np.array([0, 1, 2, 0, 1, 0, 1, 1, 3, 4] + [0] * 6)] * 3).astype(np.int32)
    positions[1, 7] = 2  # an image-like position: h differs from t
    sample = PackedSample(
        tokens=tokens, labels=labels, loss_mask=loss, position_ids=positions, seq_lens=np.array([3, 2, 5], np.int32),
        images=[], image_grid_thw=[], documents=[packed_document("text", n) for n in (3, 2, 5)], num_padding=6,
    )
    batch = build_batch([sample], [], [(0, 0)], ImageSettings().patch_dim, document_alignment=4)
    assert batch.cu_seqlens.tolist() == [0, 4, 8, 16]
    assert batch.tokens[0].tolist() == [7, 8, 9, pad, 7, 8, pad, pad, 1, 2, 3, 4, 5, pad, pad, pad]
    assert batch.loss_mask[0].tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert batch.labels[0].tolist()[:8] == [8, 9, pad, pad, 8, pad, pad, pad]
    # Padding continues each document's positions (after its largest), equal on the three axes.
    assert batch.position_ids[:, 0, 3].tolist() == [3, 3, 3] and batch.position_ids[:, 0, 6:8].tolist() == [[2, 3]] * 3
    assert batch.position_ids[:, 0, 13:].tolist() == [[5, 6, 7]] * 3
    assert batch.position_ids[1, 0, 8:13].tolist() == [0, 1, 2, 3, 4]
    assert batch.loss_tokens_per_kind == build_batch([sample], [], [(0, 0)], ImageSettings().patch_dim).loss_tokens_per_kind


def test_a_dataset_packed_without_room_for_the_alignment_is_refused(packed_corpus):
    with pytest.raises(ValueError, match=r"packed with room for documents aligned to 1; re-pack it with "
                                         r"`python -m data_prep pack --document-alignment 4`"):
        TrainLoader(packed_corpus.config(), tokenizer_fingerprint=packed_corpus.tokenizer_fingerprint,
                    document_alignment=4)
