"""Model FLOPs of one micro-batch (ViT + projector + LLM, forward and backward), for the MFU estimate.

Matrix multiplications only, counted as 2 FLOPs per multiply-add; backward costs twice the forward;
recompute is not counted (MFU, not hardware FLOPs). Attention is counted per segment: causal within
each document in the LLM (n(n+1)/2 query-key pairs), full within each window or image in the ViT.
The ViT runs a video as its temporal patches, each attended like an image of the video's rows x columns,
so video grids are counted as image grids are.
"""

from __future__ import annotations

import torch

from megatron_vl.config.model import VLModelConfig

TRAINED, FROZEN_IN_GRAPH, FROZEN_NO_GRAD = 3, 2, 1
"""Forward + backward multipliers: a trained module computes input and weight gradients; a frozen one
that gradients pass through computes input gradients only; a frozen one run under ``no_grad`` none."""


def multipliers(frozen: dict[str, bool]) -> dict[str, int]:
    """The FLOP multiplier of each module given which are frozen (as ``VLModel.freeze`` runs them)."""
    vision = FROZEN_NO_GRAD if frozen["vision"] else TRAINED
    if not frozen["projector"]:
        projector = TRAINED
    else:
        projector = FROZEN_NO_GRAD if frozen["vision"] else FROZEN_IN_GRAPH
    language = FROZEN_IN_GRAPH if frozen["language"] else TRAINED
    return {"vision": vision, "projector": projector, "language": language}


def language_layer_weights(config: VLModelConfig) -> int:
    language = config.language
    hidden, head_dim = language.hidden_size, language.head_dim
    attention = hidden * head_dim * (2 * language.num_attention_heads + 2 * language.num_query_groups)
    return attention + 3 * hidden * language.ffn_hidden_size


def vision_layer_weights(config: VLModelConfig) -> int:
    hidden = config.vision.hidden_size
    return 4 * hidden * hidden + 3 * hidden * config.vision.ffn_hidden_size


def projector_weights(config: VLModelConfig) -> int:
    ffn = config.projector.ffn_hidden_size
    return config.vision.merged_hidden_size * ffn + ffn * config.language.hidden_size


def vision_forward_flops(config: VLModelConfig, grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward FLOPs of the ViT and of the projector for each image or video of ``grid_thw`` [n, 3] (float64 [n]
    each). Window layers attend within windows of the window's patches, or within the frame if it is smaller."""
    vision = config.vision
    grids = grid_thw.double().reshape(-1, 3)
    patches = grids.prod(dim=-1)
    frame_pairs = (grids[:, 1] * grids[:, 2]).pow(2).mul(grids[:, 0])
    window_pairs = patches * float((vision.window_merged_patches * vision.spatial_merge_size) ** 2)
    full_layers = len(vision.full_attention_layers)
    pairs = full_layers * frame_pairs + (vision.num_layers - full_layers) * torch.minimum(window_pairs, frame_pairs)
    encoder = 2 * patches * (
        vision.patch_dim * vision.hidden_size + vision.num_layers * vision_layer_weights(config)
    ) + 2 * 2 * pairs * vision.hidden_size
    projector = 2 * (patches / vision.spatial_merge_size**2) * projector_weights(config)
    return encoder, projector


def language_forward_flops(config: VLModelConfig, cu_seqlens: torch.Tensor) -> tuple[float, float]:
    """Forward FLOPs of the LLM's layers and of its output layer over documents ``cu_seqlens``."""
    language = config.language
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).double()
    tokens = float(lengths.sum())
    causal_pairs = float((lengths * (lengths + 1) / 2).sum())
    layers = language.num_layers * (
        2 * tokens * language_layer_weights(config)
        + 2 * 2 * causal_pairs * language.num_attention_heads * language.head_dim
    )
    return layers, 2 * tokens * language.hidden_size * language.vocab_size


def training_flops(
    config: VLModelConfig,
    frozen: dict[str, bool],
    cu_seqlens: torch.Tensor,
    image_grid_thw: torch.Tensor,
    video_grid_thw: torch.Tensor | None = None,
) -> float:
    """FLOPs to train on one micro-batch whose documents are ``cu_seqlens``, images ``image_grid_thw`` and
    videos ``video_grid_thw`` (None: no videos)."""
    layers, output_layer = language_forward_flops(config, cu_seqlens)
    forward = {"vision": 0.0, "projector": 0.0, "language": layers + output_layer}

    grids = image_grid_thw if video_grid_thw is None else torch.cat([image_grid_thw, video_grid_thw])
    if grids.numel():
        encoder, projector = vision_forward_flops(config, grids)
        forward["vision"], forward["projector"] = float(encoder.sum()), float(projector.sum())
    factors = multipliers(frozen)
    return sum(factors[module] * flops for module, flops in forward.items())
