"""The packed-sample contract, checked: the training loader runs this on every sample it reads, and
``data_prep verify --deep`` on every sample of a dataset, so both refuse exactly the same samples."""

from __future__ import annotations

import dataclasses

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
    """``<|image_pad|>``: one per merged vision token."""
    vision_start_id: int
    """``<|vision_start|>``: opens each image."""
    vision_end_id: int
    """``<|vision_end|>``: closes each image."""
    patch_size: int
    """ViT patch side in pixels (an image's grid is its size / patch_size)."""
    merge_size: int
    """Patches merged per side into one placeholder."""

    @classmethod
    def of_manifest(cls, manifest: PackedManifest) -> "SampleContract":
        ids = manifest.special_ids
        return cls(
            seq_len=manifest.seq_len, pad_id=manifest.pad_id, image_pad_id=ids["<|image_pad|>"],
            vision_start_id=ids["<|vision_start|>"], vision_end_id=ids["<|vision_end|>"],
            patch_size=manifest.image_settings.patch_size, merge_size=manifest.image_settings.merge_size,
        )


def check_packed_sample(sample: PackedSample, contract: SampleContract) -> list[str]:
    """Every way ``sample`` breaks the packed-sample contract (empty when it keeps it).

    Structure (dtypes, shapes, lengths), then per document: its record's length, labels that are the
    next tokens, a loss mask off images, vision markers and the document's end, image markers and
    placeholders that match the grids, M-RoPE positions, its record's loss_tokens; then the padding,
    and each image's PNG size against its grid.
    """
    problems = sample.structure_problems()
    if problems:
        return problems
    if sample.seq_len != contract.seq_len:
        return [f"{sample.seq_len} tokens, manifest seq_len is {contract.seq_len}"]
    grids = iter(sample.image_grid_thw)
    cu = sample.cu_seqlens.tolist()
    for start, end, record in zip(cu[:-1], cu[1:], sample.documents):
        problems += _document_problems(sample, start, end, record, grids, contract)
    tail = slice(cu[-1], None)
    pad = contract.pad_id
    if np.any(sample.tokens[tail] != pad) or np.any(sample.labels[tail] != pad) or np.any(sample.loss_mask[tail]):
        problems.append("padding holds tokens, labels or loss other than the pad id and 0")
    for k, (image, (t, h, w)) in enumerate(zip(sample.images, sample.image_grid_thw)):
        size = png_size(image)
        if size != (h * contract.patch_size, w * contract.patch_size):
            problems.append(f"image {k}: PNG size {size} does not match its grid {(t, h, w)}")
    return problems


def _document_problems(sample: PackedSample, start: int, end: int, record, grids, contract: SampleContract) -> list[str]:
    tokens, labels, loss = sample.tokens[start:end], sample.labels[start:end], sample.loss_mask[start:end]
    vision = [contract.vision_start_id, contract.image_pad_id, contract.vision_end_id]
    name = f"document at {start}"
    problems = []
    if record.length != end - start:
        problems.append(f"{name}: record length {record.length} but seq_lens says {end - start}")
    if np.any(labels[:-1] != tokens[1:]) or labels[-1] != contract.pad_id:
        problems.append(f"{name}: labels are not the next tokens of the document")
    if np.any(loss.astype(bool) & np.isin(labels, vision)) or loss[-1]:
        problems.append(f"{name}: the loss mask covers image tokens, vision markers or the document's end")
    starts = np.flatnonzero(tokens == contract.vision_start_id).tolist()
    document_grids = [next(grids, None) for _ in starts]
    if None in document_grids or record.num_images != len(document_grids):
        return problems + [f"{name}: image markers do not match the image grids / num_images"]
    image_tokens = int(np.count_nonzero(tokens == contract.image_pad_id))
    counts = [t * h * w // contract.merge_size**2 for t, h, w in document_grids]
    if image_tokens != sum(counts) or not all(
        count >= 1 and np.all(tokens[first + 1 : first + 1 + count] == contract.image_pad_id)
        and first + 1 + count < len(tokens) and tokens[first + 1 + count] == contract.vision_end_id
        for first, count in zip(starts, counts)
    ):
        return problems + [f"{name}: {image_tokens} image placeholders do not match its image grids"]
    expected = mrope_position_ids(
        tokens, document_grids, image_pad_id=contract.image_pad_id, vision_start_id=contract.vision_start_id,
        spatial_merge_size=contract.merge_size,
    )
    if not np.array_equal(sample.position_ids[:, start:end], expected):
        problems.append(f"{name}: position ids are not the document's M-RoPE positions")
    if record.loss_tokens != int(loss.sum()):
        problems.append(f"{name}: record loss_tokens {record.loss_tokens} but the mask has {int(loss.sum())}")
    return problems
