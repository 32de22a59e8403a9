"""Layer specs of the ViT, the projector and the LLM: the one place Transformer Engine or local modules are chosen.

With Transformer Engine and a GPU: TE norms, linears and ``TEDotProductAttention`` (flash / cuDNN attention
over THD-packed sequences). Otherwise megatron-core's local linears with the two pieces the local path lacks,
written here: ``RMSNorm`` that works under sequence parallelism and ``PackedDotProductAttention``.

Both backends build the same module tree with the same parameter names (norms are separate modules, not
fused into the following linear), so a checkpoint, the HF mapping and the sharding rules do not depend on
where the model was built.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
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
from megatron_vl.models.vision import VisionTransformerLayer


@dataclasses.dataclass(frozen=True)
class Backend:
    """The module classes a layer is built from."""

    name: str
    norm: type
    column_parallel_linear: type
    row_parallel_linear: type
    core_attention: type


@functools.cache
def backend() -> Backend:
    """Transformer Engine when it is installed and a GPU is present, megatron-core's local modules otherwise."""
    if torch.cuda.is_available():
        try:
            from megatron.core.extensions.transformer_engine import (
                TEColumnParallelLinear,
                TEDotProductAttention,
                TENorm,
                TERowParallelLinear,
            )
        except ImportError:
            pass
        else:
            return Backend("transformer_engine", TENorm, TEColumnParallelLinear, TERowParallelLinear, TEDotProductAttention)
    return Backend("local", RMSNorm, ColumnParallelLinear, RowParallelLinear, PackedDotProductAttention)


def _mlp_submodules() -> MLPSubmodules:
    return MLPSubmodules(linear_fc1=backend().column_parallel_linear, linear_fc2=backend().row_parallel_linear)


def _layer_spec(layer: type, attn_mask_type: AttnMaskType, params: dict | None = None) -> ModuleSpec:
    b = backend()
    return ModuleSpec(
        module=layer,
        params=params or {},
        submodules=TransformerLayerSubmodules(
            input_layernorm=b.norm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": attn_mask_type},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=b.column_parallel_linear,
                    core_attention=b.core_attention,
                    linear_proj=b.row_parallel_linear,
                    q_layernorm=IdentityOp,
                    k_layernorm=IdentityOp,
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=b.norm,
            mlp=ModuleSpec(module=MLP, submodules=_mlp_submodules()),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def vision_layer_spec(vision: VisionConfig) -> ModuleSpec:
    """A ViT layer: bidirectional attention within its windows, or within whole frames on full-attention layers."""
    return _layer_spec(
        VisionTransformerLayer,
        AttnMaskType.no_mask,
        {"full_attention_layers": tuple(vision.full_attention_layers)},
    )


def language_block_spec(config: TransformerConfig, pp_rank: int) -> TransformerBlockSubmodules:
    """This pipeline stage's LLM layers (causal attention within documents) and the final norm."""
    layer = _layer_spec(TransformerLayer, AttnMaskType.causal)
    num_layers = get_num_layers_to_build(config, pp_rank=pp_rank)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=backend().norm)


def projector_spec() -> MLPSubmodules:
    """The projector MLP: column-parallel Linear, GELU, row-parallel Linear."""
    return _mlp_submodules()


def norm_spec() -> type:
    """The norm module (the projector's ``ln_q``)."""
    return backend().norm
