"""The LLM: megatron-core's ``GPTModel`` with M-RoPE, GQA, qkv bias, SwiGLU, RMSNorm and untied embeddings."""

from __future__ import annotations

from megatron.core.models.gpt import GPTModel
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_vl.config.model import LanguageConfig


def build_language_model(
    language: LanguageConfig,
    transformer_config: TransformerConfig,
    block_spec: TransformerBlockSubmodules,
    pg_collection: ProcessGroupCollection,
    *,
    pre_process: bool,
    post_process: bool,
) -> GPTModel:
    """This pipeline stage's part of the LLM.

    The embedding is not scattered for sequence parallelism here: the caller first replaces image
    placeholders with projector outputs, then scatters.
    """
    return GPTModel(
        config=transformer_config,
        transformer_layer_spec=block_spec,
        vocab_size=language.padded_vocab_size(pg_collection.tp.size()),
        max_sequence_length=language.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=False,
        position_embedding_type="mrope",
        rotary_base=language.rope_theta,
        scatter_embedding_sequence_parallel=False,
        pg_collection=pg_collection,
    )
