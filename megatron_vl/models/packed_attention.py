"""Core attention over packed sequences for the local (non-Transformer-Engine) layer spec.

megatron-core's local ``DotProductAttention`` refuses ``packed_seq_params``; a dense [t, t] block-diagonal
mask would cost t² memory (1 GiB of bools at 32K). Here attention runs per segment of ``cu_seqlens``
instead: segments of equal length are batched into one ``scaled_dot_product_attention`` call, so memory
grows with the longest segment, not with the packed length. Causal (LLM) or bidirectional (ViT) is the
layer's ``attn_mask_type``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
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
        assert isinstance(packed_seq_params, PackedSegments), "build packed_seq_params with packed_seq_params()"
        groups = packed_seq_params.length_groups
        assert groups.num_tokens == query.shape[0], "cu_seqlens must cover every packed token"
        outputs = []
        for length, count, index in zip(groups.lengths, groups.counts, groups.indices):
            q, k, v = (x[index].reshape(count, length, *x.shape[1:]) for x in (query, key, value))
            outputs.append(self._attend(q, k, v, dropout).reshape(count * length, -1))
        return torch.cat(outputs)[groups.inverse_order]


@dataclasses.dataclass(frozen=True)
class LengthGroups:
    """The segments of ``cu_seqlens`` grouped by length: one batched attention call per distinct length."""

    lengths: tuple[int, ...]
    counts: tuple[int, ...]
    """How many segments have each length."""
    indices: tuple[torch.Tensor, ...]
    """Per length: the token positions of its segments, segment after segment."""
    inverse_order: torch.Tensor
    """Puts the concatenated per-length outputs back in token order."""
    num_tokens: int


def _length_groups(cu_seqlens: torch.Tensor) -> LengthGroups:
    bounds = cu_seqlens.tolist()
    by_length: dict[int, list[int]] = {}
    for start, end in itertools.pairwise(bounds):
        if end > start:
            by_length.setdefault(end - start, []).append(start)
    indices = []
    for length, starts in by_length.items():
        starts = torch.tensor(starts, dtype=torch.long, device=cu_seqlens.device)
        indices.append((starts[:, None] + torch.arange(length, device=cu_seqlens.device)).reshape(-1))
    return LengthGroups(
        lengths=tuple(by_length),
        counts=tuple(len(starts) for starts in by_length.values()),
        indices=tuple(indices),
        inverse_order=torch.argsort(torch.cat(indices)),
        num_tokens=bounds[-1],
    )


@dataclasses.dataclass
class PackedSegments(PackedSeqParams):
    """megatron's THD ``PackedSeqParams`` (self-attention: q and kv share ``cu_seqlens``) that also groups its
    segments by length for ``PackedDotProductAttention``, once per forward rather than in every layer: the
    grouping reads ``cu_seqlens`` on the host. Transformer Engine never asks for it, so it costs nothing there;
    TE reads only the fields of ``PackedSeqParams``."""

    @functools.cached_property
    def length_groups(self) -> LengthGroups:
        return _length_groups(self.cu_seqlens_q)


def packed_seq_params(cu_seqlens: torch.Tensor) -> PackedSegments:
    """megatron's THD ``PackedSeqParams`` for self-attention within the segments of ``cu_seqlens``."""
    cu_seqlens = cu_seqlens.to(torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return PackedSegments(
        qkv_format="thd",
        cu_seqlens_q=cu_seqlens,
        cu_seqlens_kv=cu_seqlens,
        max_seqlen_q=longest,
        max_seqlen_kv=longest,
    )
