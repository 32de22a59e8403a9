"""Shared inputs of the model tests: the ``tiny`` config, an HF oracle with random weights, packed micro-batches.

Everything is seeded, so every rank of a multi-rank test builds the same weights and batches.
"""

from __future__ import annotations

import dataclasses

import torch

from megatron_vl.config.model import VLModelConfig, tiny

IMAGE, VISION_START, VISION_END, VIDEO = 5, 3, 4, 6
PAD = 0
TEXT_IDS = (10, 4096)


def tiny_config(**overrides) -> VLModelConfig:
    return tiny(image_token_id=IMAGE, video_token_id=VIDEO, **overrides)


def hf_model(config: VLModelConfig, seed: int = 0, std: float = 0.05):
    """HF ``Qwen2_5_VLForConditionalGeneration`` for ``config``, every parameter (biases and norms too) random:
    normal of ``std`` around 0, norms around 1."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from megatron_vl.models.hf_config import to_hf_config

    hf_config = Qwen2_5_VLConfig(
        **to_hf_config(config, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END)
    )
    hf_config._attn_implementation = "eager"
    model = Qwen2_5_VLForConditionalGeneration(hf_config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm = any(part in name for part in ("norm", "ln_q"))
            param.copy_(torch.randn(param.shape, generator=generator) * std + (1.0 if is_norm else 0.0))
    return model


def mm_token_types(ids: torch.Tensor) -> torch.Tensor:
    """HF's ``mm_token_type_ids`` of ``ids``: 0 text, 1 image placeholder, 2 video placeholder."""
    return (ids == IMAGE).int() + 2 * (ids == VIDEO).int()


@dataclasses.dataclass(frozen=True)
class Video:
    """A video in a document: its grid (temporal patches, rows, columns) and the seconds one temporal patch spans."""

    grid: tuple[int, int, int]
    second_per_grid_t: float


@dataclasses.dataclass
class Document:
    """One document: tokens, its M-RoPE positions from HF's ``get_rope_index``, its images and its videos."""

    ids: torch.Tensor
    positions: torch.Tensor
    pixel_values: torch.Tensor | None
    grids: torch.Tensor | None
    pixel_values_videos: torch.Tensor | None = None
    video_grids: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None

    def model_inputs(self) -> dict:
        """``VLModel.forward``'s arguments for this document alone (one row, HF's positions)."""
        return {
            "input_ids": self.ids[None], "position_ids": self.positions[:, None], "pixel_values": self.pixel_values,
            "image_grid_thw": self.grids, "pixel_values_videos": self.pixel_values_videos,
            "video_grid_thw": self.video_grids,
        }

    def hf_inputs(self) -> dict:
        """HF's forward arguments for this document; HF computes its own positions from them."""
        ids = self.ids[None]
        return {
            "input_ids": ids, "mm_token_type_ids": mm_token_types(ids),
            "pixel_values": self.pixel_values, "image_grid_thw": self.grids,
            "pixel_values_videos": self.pixel_values_videos, "video_grid_thw": self.video_grids,
            "second_per_grid_ts": self.second_per_grid_ts,
        }


def document(hf, generator: torch.Generator, text_lengths: list[int], grids: list) -> Document:
    """Text runs of ``text_lengths`` with one image or video between consecutive runs: an image for each grid
    tuple, a video for each ``Video``; random patches."""
    assert len(text_lengths) == len(grids) + 1
    merge = hf.config.vision_config.spatial_merge_size
    ids = []
    for index, length in enumerate(text_lengths):
        ids += torch.randint(*TEXT_IDS, (length,), generator=generator).tolist()
        if index < len(grids):
            item = grids[index]
            t, h, w = item.grid if isinstance(item, Video) else item
            ids += [VISION_START] + [VIDEO if isinstance(item, Video) else IMAGE] * (t * h * w // merge**2) + [VISION_END]
    ids = torch.tensor([ids])
    image_grids = [item for item in grids if not isinstance(item, Video)]
    videos = [item for item in grids if isinstance(item, Video)]
    patch_dim = 3 * hf.config.vision_config.temporal_patch_size * hf.config.vision_config.patch_size**2

    def patches(grid: torch.Tensor | None) -> torch.Tensor | None:
        return None if grid is None else torch.randn(int(grid.prod(-1).sum()), patch_dim, generator=generator)

    image_grid = torch.tensor(image_grids) if image_grids else None
    video_grid = torch.tensor([video.grid for video in videos]) if videos else None
    seconds = torch.tensor([video.second_per_grid_t for video in videos]) if videos else None
    if grids:
        positions, _ = hf.model.get_rope_index(
            ids, mm_token_type_ids=mm_token_types(ids), image_grid_thw=image_grid, video_grid_thw=video_grid,
            second_per_grid_ts=seconds,
        )
    else:
        positions = torch.arange(ids.shape[1]).expand(3, 1, -1)
    return Document(ids[0], positions[:, 0], patches(image_grid), image_grid, patches(video_grid), video_grid, seconds)


def micro_batch(rows: list[list[Document]], seq_len: int, document_alignment: int = 1) -> dict:
    """Documents packed row by row and padded to ``seq_len``; the padding of a row is a segment of its own.

    Labels are the next token within the document; the loss mask drops each document's last token,
    image and video placeholders and padding. ``document_alignment`` pads each document inside its own segment to
    a multiple of it, as the loaders do for context parallelism (``data.batch.aligned_row``).
    """
    ids, positions, labels, mask, bounds = [], [], [], [], [0]
    pixel_values, grids, video_pixels, video_grids = [], [], [], []
    for row in rows:
        row_ids, row_positions, row_labels, row_mask = [], [], [], []
        for doc in row:
            row_ids.append(doc.ids)
            row_positions.append(doc.positions)
            row_labels.append(torch.cat([doc.ids[1:], torch.tensor([PAD])]))
            is_text = (doc.ids[1:] != IMAGE) & (doc.ids[1:] != VIDEO)
            row_mask.append(torch.cat([is_text.float(), torch.zeros(1)]))
            pad = -len(doc.ids) % document_alignment
            row_ids.append(torch.full((pad,), PAD))
            row_positions.append((doc.positions.max() + 1 + torch.arange(pad)).expand(3, -1))
            row_labels.append(torch.full((pad,), PAD))
            row_mask.append(torch.zeros(pad))
            bounds.append(bounds[-1] + len(doc.ids) + pad)
            if doc.pixel_values is not None:
                pixel_values.append(doc.pixel_values)
                grids.append(doc.grids)
            if doc.pixel_values_videos is not None:
                video_pixels.append(doc.pixel_values_videos)
                video_grids.append(doc.video_grids)
        padding = seq_len - sum(len(ids) for ids in row_ids)
        assert padding >= 0
        if padding:
            row_ids.append(torch.full((padding,), PAD))
            row_positions.append(torch.arange(padding).expand(3, -1))
            row_labels.append(torch.full((padding,), PAD))
            row_mask.append(torch.zeros(padding))
            bounds.append(bounds[-1] + padding)
        ids.append(torch.cat(row_ids))
        positions.append(torch.cat(row_positions, dim=1))
        labels.append(torch.cat(row_labels))
        mask.append(torch.cat(row_mask))
    return {
        "input_ids": torch.stack(ids),
        "position_ids": torch.stack(positions, dim=1),
        "pixel_values": torch.cat(pixel_values) if pixel_values else None,
        "image_grid_thw": torch.cat(grids) if grids else None,
        "pixel_values_videos": torch.cat(video_pixels) if video_pixels else None,
        "video_grid_thw": torch.cat(video_grids) if video_grids else None,
        "cu_seqlens": torch.tensor(bounds, dtype=torch.int32),
        "labels": torch.stack(labels),
        "loss_mask": torch.stack(mask),
    }


def model_inputs(batch: dict) -> dict:
    """The ``VLModel.forward`` keyword arguments of a micro-batch (everything but the loss mask)."""
    return {key: value for key, value in batch.items() if key != "loss_mask"}


def build_model(config: VLModelConfig, parallel, pg_collection, full_state_dict: dict | None = None):
    """A ``VLModel`` for this rank's pipeline stage, with ``full_state_dict`` loaded into its shards."""
    from megatron_vl.models import VLModel
    from megatron_vl.models.sharding import load_full_state_dict
    from megatron_vl.runtime.platform import detect_platform

    pp = pg_collection.pp
    model = VLModel(
        config,
        parallel=parallel,
        pg_collection=pg_collection,
        platform=detect_platform(),
        pre_process=pp.rank() == 0,
        post_process=pp.rank() == pp.size() - 1,
    )
    if full_state_dict is not None:
        load_full_state_dict(model, full_state_dict)
    return model
