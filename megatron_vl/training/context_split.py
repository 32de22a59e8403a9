"""How one micro-batch is split over the context-parallel ranks: its tokens (``ContextShard``, megatron's per-document
load-balanced split) and its ViT work (``VisionWorkShare``): the images and videos go to the CP ranks by their ViT +
projector FLOPs (``flops.vision_forward_flops``, largest first to the least loaded rank), and every merged row to the
rank that holds its placeholder token. Every CP rank computes the same split from the same micro-batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megatron_vl.config.model import VLModelConfig
from megatron_vl.models.context_parallel import ContextShard, context_shard
from megatron_vl.models.vision_sharing import VisionWorkShare, balanced_assignment
from megatron_vl.training.flops import vision_forward_flops


def context_split(
    config: VLModelConfig,
    cp_group: dist.ProcessGroup | None,
    *,
    tokens: torch.Tensor,
    cu_seqlens: torch.Tensor,
    image_grid_thw: torch.Tensor | None,
    video_grid_thw: torch.Tensor | None,
) -> tuple[ContextShard | None, VisionWorkShare | None]:
    """This rank's shard of the micro-batch (``tokens`` [b, s], segments ``cu_seqlens``) and the share of its vision
    work (None when it has no image or video); (None, None) without context parallelism."""
    shard = context_shard(cu_seqlens, cp_group)
    if shard is None:
        return None, None
    kinds = [(grid, token_id) for grid, token_id in ((image_grid_thw, config.image_token_id),
                                                     (video_grid_thw, config.video_token_id))
             if grid is not None and grid.shape[0]]
    if not kinds:
        return shard, None
    grids = torch.cat([grid for grid, _ in kinds]).cpu()
    encoder_flops, projector_flops = vision_forward_flops(config, grids)
    patches = grids.prod(dim=-1).tolist()
    flat = tokens.reshape(-1).cpu()
    # Merged rows in global order are the images' then the videos', each filling its kind's placeholders in order.
    placeholders = torch.cat([torch.nonzero(flat == token_id).reshape(-1) for _, token_id in kinds])
    return shard, VisionWorkShare(
        group=shard.group,
        encoder=balanced_assignment((encoder_flops + projector_flops).tolist(), shard.size),
        patches=tuple(patches),
        rows=tuple(count // config.vision.spatial_merge_size**2 for count in patches),
        receiver=shard.owner.cpu()[placeholders],
    )
