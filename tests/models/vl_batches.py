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


def hf_model(config: VLModelConfig, seed: int = 0):
    """HF ``Qwen2_5_VLForConditionalGeneration`` for ``config``, every parameter (biases and norms too) random."""
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
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05 + (1.0 if is_norm else 0.0))
    return model


@dataclasses.dataclass
class Document:
    """One document: tokens, its M-RoPE positions from HF's ``get_rope_index``, and its images."""

    ids: torch.Tensor
    positions: torch.Tensor
    pixel_values: torch.Tensor | None
    grids: torch.Tensor | None


def document(hf, generator: torch.Generator, text_lengths: list[int], grids: list[tuple[int, int, int]]) -> Document:
    """Text runs of ``text_lengths`` with an image of each grid between consecutive runs."""
    assert len(text_lengths) == len(grids) + 1
    merge = hf.config.vision_config.spatial_merge_size
    ids = []
    for index, length in enumerate(text_lengths):
        ids += torch.randint(*TEXT_IDS, (length,), generator=generator).tolist()
        if index < len(grids):
            t, h, w = grids[index]
            ids += [VISION_START] + [IMAGE] * (t * h * w // merge**2) + [VISION_END]
    ids = torch.tensor([ids])
    grid_tensor = torch.tensor(grids) if grids else None
    if grids:
        positions, _ = hf.model.get_rope_index(ids, mm_token_type_ids=(ids == IMAGE).int(), image_grid_thw=grid_tensor)
    else:
        positions = torch.arange(ids.shape[1]).expand(3, 1, -1)
    pixel_values = None
    if grids:
        patch_dim = 3 * hf.config.vision_config.temporal_patch_size * hf.config.vision_config.patch_size**2
        pixel_values = torch.randn(int(grid_tensor.prod(-1).sum()), patch_dim, generator=generator)
    return Document(ids[0], positions[:, 0], pixel_values, grid_tensor)


def micro_batch(rows: list[list[Document]], seq_len: int) -> dict:
    """Documents packed row by row and padded to ``seq_len``; the padding of a row is a segment of its own.

    Labels are the next token within the document; the loss mask drops each document's last token,
    image placeholders and padding.
    """
    ids, positions, labels, mask, bounds = [], [], [], [], [0]
    pixel_values, grids = [], []
    for row in rows:
        row_ids, row_positions, row_labels, row_mask = [], [], [], []
        for doc in row:
            row_ids.append(doc.ids)
            row_positions.append(doc.positions)
            row_labels.append(torch.cat([doc.ids[1:], torch.tensor([PAD])]))
            row_mask.append(torch.cat([(doc.ids[1:] != IMAGE).float(), torch.zeros(1)]))
            bounds.append(bounds[-1] + len(doc.ids))
            if doc.pixel_values is not None:
                pixel_values.append(doc.pixel_values)
                grids.append(doc.grids)
        padding = seq_len - sum(len(doc.ids) for doc in row)
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
