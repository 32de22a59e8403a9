"""Core attention over packed sequences for the local (non-Transformer-Engine) layer spec.

megatron-core's local ``DotProductAttention`` refuses ``packed_seq_params``; a dense [t, t] block-diagonal
mask would cost t² memory (1 GiB of bools at 32K). Here attention runs per segment of ``cu_seqlens``
instead: segments of equal length are batched into one ``scaled_dot_product_attention`` call, so memory
grows with the longest segment, not with the packed length. Causal (LLM) or bidirectional (ViT) is the
layer's ``attn_mask_type``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

_CAUSAL = (AttnMaskType.causal, AttnMaskType.padding_causal)
_BIDIRECTIONAL = (AttnMaskType.no_mask, AttnMaskType.padding)


class PackedDotProductAttention(MegatronModule):
    """softmax(q kᵀ · scale) v within each packed segment; a drop-in ``core_attention`` for ``SelfAttention``.

    With ``packed_seq_params`` (``qkv_format='thd'``): query [t, heads, d], key/value [t, groups, d],
    returns [t, heads * d]. Without: query [s, b, heads, d] (one sequence per batch entry), returns
    [s, b, heads * d]. Heads are local to this TP rank; GQA groups serve consecutive query heads, as in
    megatron's fused QKV layout.
    """

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
    ) -> None:
        super().__init__(config=config)
        assert config.context_parallel_size == 1, "packed local attention has no context parallelism"
        assert attn_mask_type in _CAUSAL + _BIDIRECTIONAL, f"unsupported attn_mask_type {attn_mask_type}"
        self.causal = attn_mask_type in _CAUSAL
        self.layer_number = layer_number
        self.scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: PackedSeqParams | None = None,
    ) -> torch.Tensor:
        assert attention_mask is None and attention_bias is None, "segments come from cu_seqlens, not masks"
        dropout = self.dropout if self.training else 0.0
        # Dropout inside a TP region must differ per TP rank, as megatron's own attention does.
        rng = tensor_parallel.get_cuda_rng_tracker().fork() if dropout > 0 else nullcontext()
        with rng:
            if packed_seq_params is None:
                return self._unpacked(query, key, value, dropout)
            return self._packed(query, key, value, packed_seq_params, dropout)

    def _attend(self, q, k, v, dropout):
        """q [n, L, heads, d], k/v [n, L, groups, d] -> [n, L, heads, d]."""
        repeats = q.shape[2] // k.shape[2]
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        k = k.repeat_interleave(repeats, dim=1)
        v = v.repeat_interleave(repeats, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal, scale=self.scale)
        return out.transpose(1, 2)

    def _unpacked(self, query, key, value, dropout):
        seq, batch = query.shape[:2]
        out = self._attend(*(x.transpose(0, 1) for x in (query, key, value)), dropout)
        return out.transpose(0, 1).reshape(seq, batch, -1)

    def _packed(self, query, key, value, packed_seq_params, dropout):
        cu_seqlens = packed_seq_params.cu_seqlens_q
        assert torch.equal(cu_seqlens, packed_seq_params.cu_seqlens_kv), "self-attention: q and kv segments match"
        assert int(cu_seqlens[-1]) == query.shape[0], "cu_seqlens must cover every packed token"
        starts = cu_seqlens[:-1].long()
        lengths = cu_seqlens[1:].long() - starts
        token_order, outputs = [], []
        for length in lengths.unique().tolist():
            if length == 0:
                continue
            seg_starts = starts[lengths == length]
            index = (seg_starts[:, None] + torch.arange(length, device=seg_starts.device)).reshape(-1)
            shape = (len(seg_starts), length)
            q, k, v = (x[index].reshape(*shape, *x.shape[1:]) for x in (query, key, value))
            outputs.append(self._attend(q, k, v, dropout).reshape(len(index), -1))
            token_order.append(index)
        out = torch.cat(outputs)
        return out[torch.argsort(torch.cat(token_order))]


def packed_seq_params(cu_seqlens: torch.Tensor) -> PackedSeqParams:
    """megatron's THD ``PackedSeqParams`` for self-attention within the segments of ``cu_seqlens``."""
    cu_seqlens = cu_seqlens.to(torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return PackedSeqParams(
        qkv_format="thd",
        cu_seqlens_q=cu_seqlens,
        cu_seqlens_kv=cu_seqlens,
        max_seqlen_q=longest,
        max_seqlen_kv=longest,
    )
