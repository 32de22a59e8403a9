"""The Qwen2.5-ViT encoder on megatron-core's ``TransformerBlock``.

All patches of all images and videos of a micro-batch form one packed sequence [num_patches, 1, hidden] (THD);
a video with t temporal patches (2 frames each) counts as t frames, each a whole-frame attention segment.
The patch embedding is a linear map of the flattened 3 x 2 x 14 x 14 patch (the same map as HF's
bias-free Conv3d). Patches are regrouped window by window (``vision_windows``), each layer attends within
its windows or, on full-attention layers, within whole frames, and every token carries a 2D rotary
embedding of its (row, column) in the image. Tensor parallelism comes from the layer spec's linears;
with sequence parallelism the packed sequence is split over the TP group between the linears.
"""

from __future__ import annotations

import dataclasses

import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.tensor_parallel import gather_from_sequence_parallel_region, scatter_to_sequence_parallel_region
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlock
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer

from megatron_vl.config.model import VisionConfig
from megatron_vl.models.packed_attention import packed_seq_params
from megatron_vl.models.transformer_configs import parameter_device
from megatron_vl.models.vision_windows import vision_windows


@dataclasses.dataclass(frozen=True)
class VisionAttentionSegments:
    """The two segmentations of the ViT's packed sequence; each ``VisionTransformerLayer`` picks its own."""

    window: PackedSeqParams
    """One segment per attention window (window-attention layers)."""
    full: PackedSeqParams
    """One segment per image frame (full-attention layers)."""


class VisionTransformerLayer(TransformerLayer):
    """A megatron ``TransformerLayer`` that attends within windows, or within whole frames if it is a
    full-attention layer. It receives both segmentations and passes its own to the attention, so the
    same layer works with any core attention that takes THD ``PackedSeqParams`` (local or TE)."""

    def __init__(self, *args, full_attention_layers: tuple[int, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.full_attention = self.layer_number - 1 in full_attention_layers

    def forward(self, *args, packed_seq_params: VisionAttentionSegments | None = None, **kwargs):
        assert isinstance(packed_seq_params, VisionAttentionSegments), "the ViT always runs packed"
        own = packed_seq_params.full if self.full_attention else packed_seq_params.window
        return super().forward(*args, packed_seq_params=own, **kwargs)


def vision_rotary_embedding(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Angles [n, 1, 1, head_dim] of the 2D rotary embedding at (row, column) ``positions`` [n, 2].

    A quarter of each head's dimensions rotate with the row and a quarter with the column, laid out
    [row, column, row, column] for megatron's rotate-half convention (as HF's Qwen2.5-ViT does).
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim // 2, 2, dtype=torch.float32) / (head_dim // 2))
    angles = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)
    row_col = angles.flatten(1)
    return torch.cat([row_col, row_col], dim=-1)[:, None, None, :]


class VisionEncoder(MegatronModule):
    """Qwen2.5-ViT: ``forward(pixel_values, image_grid_thw)`` -> one feature per patch [num_patches, hidden],
    in the input's patch order (HF's ``visual`` before its ``merger``)."""

    def __init__(
        self,
        vision: VisionConfig,
        transformer_config: TransformerConfig,
        layer_spec: ModuleSpec,
        pg_collection: ProcessGroupCollection,
    ) -> None:
        super().__init__(config=transformer_config)
        self.vision = vision
        self.tp_group = pg_collection.tp
        self.patch_embed = torch.nn.Linear(
            vision.patch_dim,
            vision.hidden_size,
            bias=False,
            dtype=transformer_config.params_dtype,
            device=parameter_device(transformer_config),
        )
        with torch.no_grad():
            transformer_config.init_method(self.patch_embed.weight)
        self.decoder = TransformerBlock(
            config=transformer_config,
            spec=layer_spec,
            pre_process=True,
            post_process=False,
            pg_collection=pg_collection,
        )

    def forward(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        vision = self.vision
        num_patches = int(image_grid_thw.prod(dim=-1).sum())
        if pixel_values.shape != (num_patches, vision.patch_dim):
            raise ValueError(
                f"pixel_values has shape {tuple(pixel_values.shape)} but image_grid_thw describes {num_patches} "
                f"patches of {vision.patch_dim} values; pass the image processor's flattened patches of all images "
                "of the micro-batch, in order"
            )
        windows = vision_windows(
            image_grid_thw.cpu(),
            spatial_merge_size=vision.spatial_merge_size,
            window_merged_patches=vision.window_merged_patches,
        )
        device = pixel_values.device
        order = windows.patch_order.to(device)
        hidden = self.patch_embed(pixel_values.to(self.patch_embed.weight.dtype))[order]
        rotary = vision_rotary_embedding(windows.positions.to(device)[order], vision.head_dim, vision.rope_theta)
        window_cu, frame_cu = windows.window_cu_seqlens.to(device), windows.frame_cu_seqlens.to(device)

        # Sequence parallelism splits the sequence evenly over TP ranks: pad it with a segment of its own.
        padding = -num_patches % self.tp_group.size() if self.config.sequence_parallel else 0
        if padding:
            hidden = torch.nn.functional.pad(hidden, (0, 0, 0, padding))
            rotary = torch.nn.functional.pad(rotary, (0, 0, 0, 0, 0, 0, 0, padding))
            end = torch.tensor([num_patches + padding], dtype=torch.int32, device=device)
            window_cu, frame_cu = torch.cat([window_cu, end]), torch.cat([frame_cu, end])
        segments = VisionAttentionSegments(window=packed_seq_params(window_cu), full=packed_seq_params(frame_cu))

        hidden = hidden.unsqueeze(1)
        if self.config.sequence_parallel:
            hidden = scatter_to_sequence_parallel_region(hidden, group=self.tp_group)
        hidden = self.decoder(hidden_states=hidden, attention_mask=None, rotary_pos_emb=rotary, packed_seq_params=segments)
        if self.config.sequence_parallel:
            # Downstream (projector, LLM embedding) every TP rank holds the same full tensor and the same
            # gradient, so the backward of this gather is a plain split, not a reduce-scatter.
            hidden = gather_from_sequence_parallel_region(hidden, tensor_parallel_output_grad=False, group=self.tp_group)
        hidden = hidden[:num_patches, 0]
        return hidden[torch.argsort(order)]
