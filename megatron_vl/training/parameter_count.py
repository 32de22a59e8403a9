"""Parameters one GPU of each pipeline stage holds, from the model config and the parallel layout alone.

Counted the way ``VLModel`` builds its modules: column-parallel weights and biases and the vocabulary
(padded to a multiple of TP) are split over TP; norms, the ViT's patch embedding and the biases of
row-parallel linears are whole on every TP rank. The first pipeline stage holds the ViT, the projector
and the embedding; the last holds the final norm and the (untied) output layer.
"""

from __future__ import annotations

import dataclasses

from megatron_vl.config.model import VLModelConfig
from megatron_vl.config.parallel import ParallelConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageParameters:
    """Parameters of one TP rank of one pipeline stage, per module (``VLModel``'s submodules)."""

    vision: int
    """The ViT (``vision_model``): 0 except on the first stage."""
    projector: int
    """The patch merger (``vision_projection``): 0 except on the first stage."""
    language: int
    """This stage's part of the LLM (``language_model``): its layers, plus embedding / final norm / output layer."""

    @property
    def total(self) -> int:
        return self.vision + self.projector + self.language


def _swiglu_layer(hidden: int, qkv_width: int, ffn: int, tp: int, *, row_bias: bool, mlp_bias: bool) -> int:
    """One transformer layer's parameters on one TP rank: two norms, qkv (with bias), output projection,
    SwiGLU fc1 (gate and up) and fc2."""
    norms = 2 * hidden
    qkv = (qkv_width * hidden + qkv_width) // tp
    projection = hidden * hidden // tp + (hidden if row_bias else 0)
    fc1 = (2 * ffn * hidden + (2 * ffn if mlp_bias else 0)) // tp
    fc2 = hidden * ffn // tp + (hidden if mlp_bias else 0)
    return norms + qkv + projection + fc1 + fc2


def vision_parameters(model: VLModelConfig, tp: int) -> int:
    """The ViT on one TP rank: patch embedding (no bias, whole), layers with biases everywhere (MHA)."""
    vision = model.vision
    layer = _swiglu_layer(
        vision.hidden_size, 3 * vision.hidden_size, vision.ffn_hidden_size, tp, row_bias=True, mlp_bias=True
    )
    return vision.patch_dim * vision.hidden_size + vision.num_layers * layer


def projector_parameters(model: VLModelConfig, tp: int) -> int:
    """The patch merger on one TP rank: the per-patch norm, fc1 (column-parallel), fc2 (row-parallel)."""
    merged, ffn = model.vision.merged_hidden_size, model.projector.ffn_hidden_size
    fc1 = (merged * ffn + ffn) // tp
    fc2 = ffn * model.language.hidden_size // tp + model.language.hidden_size
    return model.vision.hidden_size + fc1 + fc2


def language_layer_parameters(model: VLModelConfig, tp: int) -> int:
    """One LLM layer on one TP rank: GQA qkv with bias, no other biases."""
    language = model.language
    qkv_width = (language.num_attention_heads + 2 * language.num_query_groups) * language.head_dim
    return _swiglu_layer(language.hidden_size, qkv_width, language.ffn_hidden_size, tp, row_bias=False, mlp_bias=False)


def stage_parameters(model: VLModelConfig, parallel: ParallelConfig) -> list[StageParameters]:
    """Parameters on one GPU of each pipeline stage, first stage first."""
    model.validate_parallel(parallel)
    tp = parallel.tensor_parallel
    language = model.language
    vocabulary = language.padded_vocab_size(tp) * language.hidden_size // tp
    layers = model.layers_per_pipeline_stage(parallel)
    stages = []
    for index, count in enumerate(layers):
        first, last = index == 0, index == len(layers) - 1
        llm = count * language_layer_parameters(model, tp)
        llm += vocabulary if first else 0
        llm += vocabulary + language.hidden_size if last else 0
        stages.append(StageParameters(
            vision=vision_parameters(model, tp) if first else 0,
            projector=projector_parameters(model, tp) if first else 0,
            language=llm,
        ))
    return stages
