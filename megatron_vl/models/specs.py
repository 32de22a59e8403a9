"""Layer specs of the ViT, the projector and the LLM: the one place Transformer Engine or local modules are chosen.

``layer_modules(name)`` maps the platform's layer backend (``runtime.platform.Platform.layer_backend``, decided
once at start) to module classes. ``transformer_engine``: TE norms, linears and ``TEDotProductAttention`` (flash /
cuDNN attention over THD-packed sequences). ``local``: megatron-core's local linears with the two pieces the
local path lacks, written here: ``RMSNorm`` that works under sequence parallelism and ``PackedDotProductAttention``.

Both backends build the same module tree with the same parameter names (norms are separate modules, not
fused into the following linear), so a checkpoint, the HF mapping and the sharding rules do not depend on
where the model was built.
"""

from __future__ import annotations

import dataclasses

from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttentionSubmodules
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules

from megatron_vl.config.model import VisionConfig
from megatron_vl.models.norm import RMSNorm
from megatron_vl.models.packed_attention import PackedDotProductAttention
from megatron_vl.models.packed_rotary import PerTokenRotarySelfAttention
from megatron_vl.models.vision import VisionTransformerLayer


@dataclasses.dataclass(frozen=True)
class LayerModules:
    """The module classes a layer is built from."""

    norm: type
    column_parallel_linear: type
    row_parallel_linear: type
    core_attention: type


def layer_modules(layer_backend: str) -> LayerModules:
    """The modules of ``layer_backend``: ``transformer_engine`` or ``local``."""
    if layer_backend == "transformer_engine":
        from megatron.core.extensions.transformer_engine import (
            TEColumnParallelLinear,
            TEDotProductAttention,
            TENorm,
            TERowParallelLinear,
        )

        return LayerModules(TENorm, TEColumnParallelLinear, TERowParallelLinear, TEDotProductAttention)
    assert layer_backend == "local", layer_backend
    return LayerModules(RMSNorm, ColumnParallelLinear, RowParallelLinear, PackedDotProductAttention)


def _mlp_submodules(modules: LayerModules) -> MLPSubmodules:
    return MLPSubmodules(linear_fc1=modules.column_parallel_linear, linear_fc2=modules.row_parallel_linear)


def _layer_spec(modules: LayerModules, layer: type, attn_mask_type: AttnMaskType, params: dict | None = None) -> ModuleSpec:
    return ModuleSpec(
        module=layer,
        params=params or {},
        submodules=TransformerLayerSubmodules(
            input_layernorm=modules.norm,
            self_attention=ModuleSpec(
                module=PerTokenRotarySelfAttention,
                params={"attn_mask_type": attn_mask_type},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=modules.column_parallel_linear,
                    core_attention=modules.core_attention,
                    linear_proj=modules.row_parallel_linear,
                    q_layernorm=IdentityOp,
                    k_layernorm=IdentityOp,
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=modules.norm,
            mlp=ModuleSpec(module=MLP, submodules=_mlp_submodules(modules)),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def vision_layer_spec(modules: LayerModules, vision: VisionConfig) -> ModuleSpec:
    """A ViT layer: bidirectional attention within its windows, or within whole frames on full-attention layers."""
    return _layer_spec(
        modules,
        VisionTransformerLayer,
        AttnMaskType.no_mask,
        {"full_attention_layers": tuple(vision.full_attention_layers)},
    )


def language_block_spec(modules: LayerModules, config: TransformerConfig, pp_rank: int) -> TransformerBlockSubmodules:
    """This pipeline stage's LLM layers (causal attention within documents) and the final norm."""
    layer = _layer_spec(modules, TransformerLayer, AttnMaskType.causal)
    num_layers = get_num_layers_to_build(config, pp_rank=pp_rank)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=modules.norm)


def projector_spec(modules: LayerModules) -> MLPSubmodules:
    """The projector MLP: column-parallel Linear, GELU, row-parallel Linear."""
    return _mlp_submodules(modules)
