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
    """int64 [b, s] token ids, one ``<|image_pad|>`` per merged image token, one ``<|video_pad|>`` per merged
    video token."""
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
    """int64 [num_videos, 3] each video's (temporal patches, rows, columns)."""
    second_per_grid_ts: torch.Tensor
    """float32 [num_videos] seconds each video's temporal patch spans (its M-RoPE positions are already in
    ``position_ids``; kept for HF-side checks)."""
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
    *,
    video_patches: list[np.ndarray] = (),
    video_grids: list[tuple[int, int, int]] = (),
    second_per_grid_ts: list[float] = (),
) -> VLBatch:
    """Stack packed samples into one micro-batch; ``patches`` holds the patches of every image of the
    samples in order (float32 [that image's patches, patch_dim] each), ``video_patches``, ``video_grids`` and
    ``second_per_grid_ts`` those of every video, its grid and the seconds per temporal patch, in order."""
    seq_len = samples[0].seq_len
    assert all(sample.seq_len == seq_len for sample in samples)
    assert len(patches) == sum(len(sample.images) for sample in samples)
    assert len(video_patches) == len(video_grids) == len(second_per_grid_ts)
    segments = [length for sample in samples for length in segment_lengths(sample)]
    kinds = Counter()
    for sample in samples:
        kinds.update(loss_tokens_per_kind(sample))
    grids = [grid for sample in samples for grid in sample.image_grid_thw]
    return VLBatch(
        tokens=torch.from_numpy(np.stack([sample.tokens for sample in samples]).astype(np.int64)),
        labels=torch.from_numpy(np.stack([sample.labels for sample in samples]).astype(np.int64)),
        loss_mask=torch.from_numpy(np.stack([sample.loss_mask for sample in samples]).astype(np.float32)),
        position_ids=torch.from_numpy(np.stack([sample.position_ids for sample in samples], axis=1).astype(np.int64)),
        cu_seqlens=torch.from_numpy(np.concatenate([[0], np.cumsum(segments)]).astype(np.int32)),
        max_seqlen=max(segments),
        pixel_values=torch.from_numpy(np.concatenate([np.empty((0, patch_dim), np.float32), *patches])),
        image_grid_thw=torch.tensor(grids, dtype=torch.int64).reshape(len(grids), 3),
        pixel_values_videos=torch.from_numpy(np.concatenate([np.empty((0, patch_dim), np.float32), *video_patches])),
        video_grid_thw=torch.tensor(video_grids, dtype=torch.int64).reshape(len(video_grids), 3),
        second_per_grid_ts=torch.tensor(second_per_grid_ts, dtype=torch.float32),
        loss_tokens_per_kind=dict(sorted(kinds.items())),
        sample_ids=list(sample_ids),
    )
