"""The packed-sample contract, checked: the training loader runs this on every sample it reads, and
``data_prep verify --deep`` on every sample of a dataset, so both refuse exactly the same samples."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from megatron_vl.data.mrope import mrope_position_ids
from megatron_vl.data.packed_format import PackedSample, png_size
from megatron_vl.data.packed_manifest import PackedManifest


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleContract:
    """What every sample of one packed dataset must agree with, from its manifest."""

    seq_len: int
    """Tokens in every sample."""
    pad_id: int
    """Id of the padding tokens and of the labels that predict nothing."""
    image_pad_id: int
    """``<|image_pad|>``: one per merged vision token of an image."""
    video_pad_id: int
    """``<|video_pad|>``: one per merged vision token of a video."""
    vision_start_id: int
    """``<|vision_start|>``: opens each image or video."""
    vision_end_id: int
    """``<|vision_end|>``: closes each image or video."""
    patch_size: int
    """ViT patch side in pixels (an image's or video frame's grid is its size / patch_size)."""
    merge_size: int
    """Patches merged per side into one placeholder."""
    temporal_patch_size: int
    """Video frames per temporal patch (a video's grid t is its frames / this, rounded up)."""
    tokens_per_second: int
    """Temporal M-RoPE positions per second of video."""
    document_alignment: int = 1
    """The row holds its documents each rounded up to a multiple of this (``pack --document-alignment``)."""

    @classmethod
    def of_manifest(cls, manifest: PackedManifest) -> "SampleContract":
        ids, images = manifest.special_ids, manifest.image_settings
        return cls(
            seq_len=manifest.seq_len, pad_id=manifest.pad_id, image_pad_id=ids["<|image_pad|>"],
            video_pad_id=ids["<|video_pad|>"], vision_start_id=ids["<|vision_start|>"],
            vision_end_id=ids["<|vision_end|>"], patch_size=images.patch_size, merge_size=images.merge_size,
            temporal_patch_size=images.temporal_patch_size, tokens_per_second=manifest.pack_settings.tokens_per_second,
            document_alignment=manifest.pack_settings.document_alignment,
        )


def check_packed_sample(sample: PackedSample, contract: SampleContract) -> list[str]:
    """Every way ``sample`` breaks the packed-sample contract (empty when it keeps it).

    Structure (dtypes, shapes, lengths), then per document: its record's length, labels that are the
    next tokens, a loss mask off images, videos, vision markers and the document's end, image and video
    markers and placeholders that match the grids, M-RoPE positions, its record's loss_tokens; then the room
    the document alignment reserves, the padding, each image's PNG size against its grid, and each video's
    frame count and every frame's PNG size against its grid.
    """
    problems = sample.structure_problems()
    if problems:
        return problems
    if sample.seq_len != contract.seq_len:
        return [f"{sample.seq_len} tokens, manifest seq_len is {contract.seq_len}"]
    grids = {contract.image_pad_id: iter(sample.image_grid_thw), contract.video_pad_id: iter(sample.video_grid_thw)}
    seconds = iter(sample.second_per_grid_ts)
    cu = sample.cu_seqlens.tolist()
    for start, end, record in zip(cu[:-1], cu[1:], sample.documents):
        problems += _document_problems(sample, start, end, record, grids, seconds, contract)
    alignment = contract.document_alignment
    room = int(sum(-(-length // alignment) * alignment for length in sample.seq_lens.tolist()))
    if room > sample.seq_len:
        problems.append(f"documents {sample.seq_lens.tolist()} rounded up to multiples of the manifest's document "
                        f"alignment {alignment} need {room} tokens, more than the row's {sample.seq_len}")
    tail = slice(cu[-1], None)
    pad = contract.pad_id
    if np.any(sample.tokens[tail] != pad) or np.any(sample.labels[tail] != pad) or np.any(sample.loss_mask[tail]):
        problems.append("padding holds tokens, labels or loss other than the pad id and 0")
    for k, (image, (t, h, w)) in enumerate(zip(sample.images, sample.image_grid_thw)):
        size = png_size(image)
        if size != (h * contract.patch_size, w * contract.patch_size):
            problems.append(f"image {k}: PNG size {size} does not match its grid {(t, h, w)}")
    for k, (frames, (t, h, w), interval) in enumerate(zip(sample.videos, sample.video_grid_thw,
                                                           sample.second_per_grid_ts)):
        if math.ceil(len(frames) / contract.temporal_patch_size) != t:
            problems.append(f"video {k}: {len(frames)} frames do not make its grid's {t} temporal patches")
        sizes = {png_size(frame) for frame in frames}
        if sizes != {(h * contract.patch_size, w * contract.patch_size)}:
            problems.append(f"video {k}: frame PNG sizes {sorted(sizes, key=str)} do not match its grid {(t, h, w)}")
        if not (math.isfinite(interval) and interval > 0):
            problems.append(f"video {k}: second_per_grid_t {interval} is not a positive number")
    return problems


def _document_problems(
    sample: PackedSample, start: int, end: int, record, grids: dict, seconds, contract: SampleContract
) -> list[str]:
    tokens, labels, loss = sample.tokens[start:end], sample.labels[start:end], sample.loss_mask[start:end]
    vision = [contract.vision_start_id, contract.image_pad_id, contract.video_pad_id, contract.vision_end_id]
    name = f"document at {start}"
    problems = []
    if record.length != end - start:
        problems.append(f"{name}: record length {record.length} but seq_lens says {end - start}")
    if np.any(labels[:-1] != tokens[1:]) or labels[-1] != contract.pad_id:
        problems.append(f"{name}: labels are not the next tokens of the document")
    if np.any(loss.astype(bool) & np.isin(labels, vision)) or loss[-1]:
        problems.append(f"{name}: the loss mask covers image or video tokens, vision markers or the document's end")
    starts = np.flatnonzero(tokens == contract.vision_start_id).tolist()
    # Each <|vision_start|> opens an image or a video, as the placeholder after it says.
    pads = [int(tokens[first + 1]) if first + 1 < len(tokens) else None for first in starts]
    if any(pad not in grids for pad in pads):
        return problems + [f"{name}: a vision marker is not followed by image or video placeholders"]
    document_grids = [next(grids[pad], None) for pad in pads]
    video_seconds = [next(seconds, None) for pad in pads if pad == contract.video_pad_id]
    image_grids = [grid for grid, pad in zip(document_grids, pads) if pad == contract.image_pad_id]
    video_grids = [grid for grid, pad in zip(document_grids, pads) if pad == contract.video_pad_id]
    if None in document_grids or record.num_images != len(image_grids) or record.num_videos != len(video_grids):
        return problems + [f"{name}: image and video markers do not match the grids / num_images / num_videos"]
    placeholders = int(np.count_nonzero(np.isin(tokens, list(grids))))
    counts = [t * h * w // contract.merge_size**2 for t, h, w in document_grids]
    if placeholders != sum(counts) or not all(
        count >= 1 and np.all(tokens[first + 1 : first + 1 + count] == pad)
        and first + 1 + count < len(tokens) and tokens[first + 1 + count] == contract.vision_end_id
        for first, count, pad in zip(starts, counts, pads)
    ):
        return problems + [f"{name}: {placeholders} image and video placeholders do not match its grids"]
    expected = mrope_position_ids(
        tokens, image_grids, image_pad_id=contract.image_pad_id, vision_start_id=contract.vision_start_id,
        spatial_merge_size=contract.merge_size, video_grid_thw=video_grids, second_per_grid_ts=video_seconds,
        video_pad_id=contract.video_pad_id, tokens_per_second=contract.tokens_per_second,
    )
    if not np.array_equal(sample.position_ids[:, start:end], expected):
        problems.append(f"{name}: position ids are not the document's M-RoPE positions")
    if record.loss_tokens != int(loss.sum()):
        problems.append(f"{name}: record loss_tokens {record.loss_tokens} but the mask has {int(loss.sum())}")
    return problems
