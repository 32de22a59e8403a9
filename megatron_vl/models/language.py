"""The LLM: megatron-core's ``GPTModel`` with M-RoPE, GQA, qkv bias, SwiGLU, RMSNorm and untied embeddings."""

from __future__ import annotations

import torch
from megatron.core.models.common.embeddings.rotary_pos_embedding import MultimodalRotaryEmbedding
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
    placeholders with projector outputs, then scatters. The M-RoPE table is ``OwnPositionsRotaryEmbedding``'s.
    """
    model = GPTModel(
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
    model.rotary_pos_emb = OwnPositionsRotaryEmbedding(
        kv_channels=transformer_config.kv_channels, rotary_percent=1.0, rotary_interleaved=False,
        seq_len_interpolation_factor=None, rotary_base=language.rope_theta,
    )
    return model


class _OneRank:
    """A stand-in context-parallel group of one rank: what the M-RoPE table is sliced for, meaning not at all."""

    @staticmethod
    def size() -> int:
        return 1


class OwnPositionsRotaryEmbedding(MultimodalRotaryEmbedding):
    """megatron's M-RoPE table of exactly the positions it is given, one angle vector per token.

    Under context parallelism megatron's ``MultimodalRotaryEmbedding`` slices its table as if the whole packed
    sequence were one document split over the CP ranks: wrong on every rank but the first as soon as a micro-batch
    holds more than one document. Here the positions given are already this rank's tokens' (``ContextShard.local``),
    so the table is never sliced.
    """

    def forward(self, position_ids: torch.Tensor, mrope_section: list[int], cp_group=None) -> torch.Tensor:
        return super().forward(position_ids, mrope_section, cp_group=_OneRank())
