"""One micro-batch as the model takes it: packed rows of tokens, their document boundaries, image and video patches."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import torch

from megatron_vl.data.packed_format import PackedSample


@dataclasses.dataclass(kw_only=True)
class VLBatch:
    """``b`` packed sequences of ``s`` tokens and the patches of all their images and videos."""

    tokens: torch.Tensor
    """int64 [b, s] token ids, one ``<|image_pad|>`` / ``<|video_pad|>`` per merged vision token."""
    labels: torch.Tensor
    """int64 [b, s] next token of the same document (the pad id where there is none)."""
    loss_mask: torch.Tensor
    """float32 [b, s] 1 where the label counts in the loss: document text, never images, padding or prompts."""
    position_ids: torch.Tensor
    """int64 [3, b, s] M-RoPE (t, h, w) positions, restarting at 0 for each document."""
    cu_seqlens: torch.Tensor
    """int32 [n + 1] segment boundaries over the b * s tokens read row by row: each document is a
    segment, and so is the padding at the end of a row."""
    max_seqlen: int
    """Length of the longest segment."""
    pixel_values: torch.Tensor
    """float32 [num_patches, 3 * 2 * 14 * 14] the image processor's patches of every image, in order."""
    image_grid_thw: torch.Tensor
    """int64 [num_images, 3] each image's (frames, rows, columns) in patches."""
    pixel_values_videos: torch.Tensor
    """float32 [num_video_patches, 3 * 2 * 14 * 14] the video processor's patches of every video, in order."""
    video_grid_thw: torch.Tensor
    """int64 [num_videos, 3] each video's (temporal patches, rows, columns) in patches."""
    second_per_grid_ts: torch.Tensor
    """float32 [num_videos] seconds one temporal patch of each video spans."""
    loss_tokens_per_kind: dict[str, int]
    """Tokens in the loss per data kind (caption, interleaved, ...) of the documents they belong to."""
    sample_ids: list[tuple[int, int]]
    """(dataset number, sample index in that dataset) of each row: where the row came from."""

    @property
    def num_loss_tokens(self) -> int:
        return sum(self.loss_tokens_per_kind.values())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "VLBatch":
        """The same batch with every tensor on ``device``."""
        moved = {
            field.name: value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }
        return VLBatch(**moved)


def segment_lengths(sample: PackedSample) -> list[int]:
    """Attention segments of one row: its documents, then its padding tail if it has one."""
    lengths = sample.seq_lens.tolist()
    return lengths + [sample.num_padding] if sample.num_padding else lengths


@dataclasses.dataclass(frozen=True)
class Row:
    """One packed row as a micro-batch holds it."""

    tokens: np.ndarray
    labels: np.ndarray
    loss_mask: np.ndarray
    position_ids: np.ndarray
    """[3, S]"""
    segments: list[int]
    """Attention segments: the documents (each padded to the alignment), then the padding tail if any."""


def aligned_row(sample: PackedSample, alignment: int) -> Row:
    """``sample`` with each document followed by padding up to a multiple of ``alignment`` tokens, taken from the
    row's padding tail (``pack --document-alignment`` reserved it), so that every segment, the tail included,
    can be split into 2 x CP equal chunks by context parallelism.

    A document's padding is part of its segment: its tokens and labels are the pad id (the document's last label,
    which has no next token), out of the loss, at the positions after the document's last. Causal attention never
    lets a document's own tokens see them, so every real token's output is that of the unpadded row.
    """
    if alignment == 1:
        return Row(sample.tokens, sample.labels, sample.loss_mask, sample.position_ids, segment_lengths(sample))
    parts = {"tokens": [], "labels": [], "loss_mask": [], "position_ids": []}
    segments = []
    for start, end in zip(sample.cu_seqlens[:-1].tolist(), sample.cu_seqlens[1:].tolist()):
        padding = -(end - start) % alignment
        pad_id = sample.labels[end - 1]
        after = sample.position_ids[:, start:end].max() + 1
        parts["tokens"] += [sample.tokens[start:end], np.full(padding, pad_id, sample.tokens.dtype)]
        parts["labels"] += [sample.labels[start:end], np.full(padding, pad_id, sample.labels.dtype)]
        parts["loss_mask"] += [sample.loss_mask[start:end], np.zeros(padding, sample.loss_mask.dtype)]
        pad_positions = np.broadcast_to(after + np.arange(padding, dtype=sample.position_ids.dtype), (3, padding))
        parts["position_ids"] += [sample.position_ids[:, start:end], pad_positions]
        segments.append(end - start + padding)
    tail = sample.seq_len - sum(segments)
    assert tail >= 0, "check_packed_sample refuses a row without the room its document alignment needs"
    end = int(sample.cu_seqlens[-1])
    for name in ("tokens", "labels", "loss_mask"):
        parts[name].append(getattr(sample, name)[end:end + tail])
    parts["position_ids"].append(sample.position_ids[:, end:end + tail])
    return Row(
        tokens=np.concatenate(parts["tokens"]), labels=np.concatenate(parts["labels"]),
        loss_mask=np.concatenate(parts["loss_mask"]), position_ids=np.concatenate(parts["position_ids"], axis=1),
        segments=segments + ([tail] if tail else []),
    )


def loss_tokens_per_kind(sample: PackedSample) -> Counter:
    """Loss tokens of each document of ``sample``, summed per data kind."""
    counts = Counter()
    for document, start, end in zip(sample.documents, sample.cu_seqlens[:-1], sample.cu_seqlens[1:]):
        counts[document.kind] += int(sample.loss_mask[start:end].sum())
    return counts


def build_batch(
    samples: list[PackedSample],
    patches: list[np.ndarray],
    sample_ids: list[tuple[int, int]],
    patch_dim: int,
    video_patches: list[np.ndarray] = (),
    document_alignment: int = 1,
) -> VLBatch:
    """Stack packed samples into one micro-batch; ``patches`` / ``video_patches`` hold the patches of every
    image / video of the samples in order (float32 [its patches, patch_dim] each). ``document_alignment`` > 1
    pads every document to a multiple of it (``aligned_row``), as context parallelism needs."""
    seq_len = samples[0].seq_len
    assert all(sample.seq_len == seq_len for sample in samples)
    assert len(patches) == sum(len(sample.images) for sample in samples)
    assert len(video_patches) == sum(len(sample.videos) for sample in samples)
    rows = [aligned_row(sample, document_alignment) for sample in samples]
    segments = [length for row in rows for length in row.segments]
    kinds = Counter()
    for sample in samples:
        kinds.update(loss_tokens_per_kind(sample))
    grids = [grid for sample in samples for grid in sample.image_grid_thw]
    video_grids = [grid for sample in samples for grid in sample.video_grid_thw]
    seconds = [interval for sample in samples for interval in sample.second_per_grid_ts]
    return VLBatch(
        tokens=torch.from_numpy(np.stack([row.tokens for row in rows]).astype(np.int64)),
        labels=torch.from_numpy(np.stack([row.labels for row in rows]).astype(np.int64)),
        loss_mask=torch.from_numpy(np.stack([row.loss_mask for row in rows]).astype(np.float32)),
        position_ids=torch.from_numpy(np.stack([row.position_ids for row in rows], axis=1).astype(np.int64)),
        cu_seqlens=torch.from_numpy(np.concatenate([[0], np.cumsum(segments)]).astype(np.int32)),
        max_seqlen=max(segments),
        pixel_values=torch.from_numpy(np.concatenate([np.empty((0, patch_dim), np.float32), *patches])),
        image_grid_thw=torch.tensor(grids, dtype=torch.int64).reshape(len(grids), 3),
        pixel_values_videos=torch.from_numpy(np.concatenate([np.empty((0, patch_dim), np.float32), *video_patches])),
        video_grid_thw=torch.tensor(video_grids, dtype=torch.int64).reshape(len(video_grids), 3),
        second_per_grid_ts=torch.tensor(seconds, dtype=torch.float32),
        loss_tokens_per_kind=dict(sorted(kinds.items())),
        sample_ids=list(sample_ids),
    )
