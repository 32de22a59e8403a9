"""The projector (HF's ``visual.merger``): RMSNorm per patch, concatenate each merge group, then an MLP.

Input: ViT features [num_patches, vision_hidden] whose merge groups (``spatial_merge_size``² patches)
are consecutive, as the image processor orders patches. Output: one LLM embedding per merged token.
The MLP is megatron's ``MultimodalProjector`` MLP (column-parallel Linear, GELU, row-parallel Linear).
"""

from __future__ import annotations

import torch
from megatron.core.models.vision.multimodal_projector import MultimodalProjector
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.mlp import MLPSubmodules
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_vl.config.model import VLModelConfig


class Projector(MultimodalProjector):
    """``forward(features [num_patches, vision_hidden])`` -> [num_patches / merge², language_hidden].

    Megatron's ``MultimodalProjector`` (its MLP is ``encoder``, as in LLaVA checkpoints) with the patch norm.
    """

    def __init__(
        self,
        config: VLModelConfig,
        transformer_config: TransformerConfig,
        norm: type,
        mlp: MLPSubmodules,
        pg_collection: ProcessGroupCollection,
    ) -> None:
        super().__init__(
            transformer_config, mlp, "mlp", input_size=config.vision.merged_hidden_size, tp_group=pg_collection.tp
        )
        self.tp_group = pg_collection.tp
        self.merged_hidden_size = config.vision.merged_hidden_size
        self.norm = build_module(
            norm, config=transformer_config, hidden_size=config.vision.hidden_size, eps=config.projector.norm_eps
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        merged = self.norm(features).reshape(-1, 1, self.merged_hidden_size)
        return super().forward(merged)[:, 0]
