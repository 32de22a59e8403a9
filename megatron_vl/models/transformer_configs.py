"""megatron-core ``TransformerConfig``s of the ViT, the projector and the LLM, from our model and parallel configs.

Each part has its own ``TransformerConfig`` (as in megatron's LLaVA): the ViT is never pipelined and the
projector runs on whole (gathered) image sequences, so neither shares the LLM's PP or SP settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_vl.config.model import VLModelConfig
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.runtime.platform import Platform


def parameter_device(config: TransformerConfig) -> torch.device | str:
    """Where megatron-core creates a module's parameters for ``config``: the current GPU, or the CPU with
    ``use_cpu_initialization``. Our own modules create theirs there too, since nothing moves the model later."""
    return "cpu" if config.use_cpu_initialization else torch.device("cuda", torch.cuda.current_device())


def _common(config: VLModelConfig, parallel: ParallelConfig, platform: Platform) -> dict:
    dtype = getattr(torch, config.dtype)
    return dict(
        tensor_model_parallel_size=parallel.tensor_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        use_cpu_initialization=platform.use_cpu_initialization,
        init_method_std=config.init_method_std,
        normalization="RMSNorm",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        # The fused THD rotary restarts positions per segment; PerTokenRotarySelfAttention refuses it.
        apply_rope_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        gradient_accumulation_fusion=False,
    )


def vision_transformer_config(config: VLModelConfig, parallel: ParallelConfig, platform: Platform) -> TransformerConfig:
    """The ViT: MHA with qkv bias, SwiGLU with bias, never pipelined, SP as the run's layout says."""
    vision = config.vision
    return TransformerConfig(
        **_common(config, parallel, platform),
        num_layers=vision.num_layers,
        hidden_size=vision.hidden_size,
        num_attention_heads=vision.num_attention_heads,
        num_query_groups=vision.num_attention_heads,
        kv_channels=vision.head_dim,
        ffn_hidden_size=vision.ffn_hidden_size,
        layernorm_epsilon=vision.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=True,
        add_qkv_bias=True,
        pipeline_model_parallel_size=1,
        sequence_parallel=parallel.sequence_parallel,
    )


def projector_transformer_config(config: VLModelConfig, parallel: ParallelConfig, platform: Platform) -> TransformerConfig:
    """The projector MLP: merged width -> ``ffn_hidden_size`` -> LLM width, GELU, with bias, no SP."""
    return TransformerConfig(
        **_common(config, parallel, platform),
        num_layers=1,
        hidden_size=config.language.hidden_size,
        num_attention_heads=config.vision.num_attention_heads,
        ffn_hidden_size=config.projector.ffn_hidden_size,
        layernorm_epsilon=config.projector.norm_eps,
        gated_linear_unit=False,
        activation_func=F.gelu,
        add_bias_linear=True,
        pipeline_model_parallel_size=1,
        sequence_parallel=False,
    )


def language_transformer_config(config: VLModelConfig, parallel: ParallelConfig, platform: Platform) -> TransformerConfig:
    """The LLM: GQA with qkv bias (no other biases), SwiGLU, M-RoPE sections, pipelined and context-parallel over
    ``parallel`` (the ViT and projector configs keep context_parallel_size 1: they never split a sequence)."""
    language = config.language
    pipeline = {}
    if parallel.first_pipeline_stage_language_layers is not None:
        pipeline["num_layers_in_first_pipeline_stage"] = parallel.first_pipeline_stage_language_layers
    return TransformerConfig(
        **_common(config, parallel, platform),
        **pipeline,
        num_layers=language.num_layers,
        hidden_size=language.hidden_size,
        num_attention_heads=language.num_attention_heads,
        num_query_groups=language.num_query_groups,
        kv_channels=language.head_dim,
        ffn_hidden_size=language.ffn_hidden_size,
        layernorm_epsilon=language.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=True,
        mrope_section=list(language.mrope_section),
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        sequence_parallel=parallel.sequence_parallel,
        context_parallel_size=parallel.context_parallel,
        cp_comm_type=parallel.context_parallel_comm,
    )
