"""Core attention over packed sequences for the local (non-Transformer-Engine) layer spec.

megatron-core's local ``DotProductAttention`` refuses ``packed_seq_params``; a dense [t, t] block-diagonal
mask would cost t² memory (1 GiB of bools at 32K). Here attention runs per segment of ``cu_seqlens``
instead: segments of equal length are batched into one ``scaled_dot_product_attention`` call, so memory
grows with the longest segment, not with the packed length. Causal (LLM) or bidirectional (ViT) is the
layer's ``attn_mask_type``.

Under context parallelism (``PackedSegments.context``, the LLM only) each rank holds two chunks of every document
(``models/context_parallel.py``): keys and values are all-gathered over the CP group (the backward reduce-scatters
their gradients), put back in global order, and each local query attends to the keys of its document up to its
own global position. This is exact, and meant for CPU tests and as the reference of Transformer Engine's CP
attention: it holds every key of the micro-batch on every rank.
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
from megatron.core.tensor_parallel import gather_from_sequence_parallel_region
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_vl.models.context_parallel import ContextShard

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

    def _attend(self, q, k, v, dropout, mask=None):
        """q [n, Lq, heads, d], k/v [n, L, groups, d] -> [n, Lq, heads, d]; ``mask`` [Lq, L] (True: attend) replaces
        the layer's causal or full mask."""
        repeats = q.shape[2] // k.shape[2]
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        k = k.repeat_interleave(repeats, dim=1)
        v = v.repeat_interleave(repeats, dim=1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=self.causal and mask is None, scale=self.scale
        )
        return out.transpose(1, 2)

    def _unpacked(self, query, key, value, dropout):
        seq, batch = query.shape[:2]
        out = self._attend(*(x.transpose(0, 1) for x in (query, key, value)), dropout)
        return out.transpose(0, 1).reshape(seq, batch, -1)

    def _packed(self, query, key, value, packed_seq_params, dropout):
        assert isinstance(packed_seq_params, PackedSegments), "build packed_seq_params with packed_seq_params()"
        if packed_seq_params.context is not None:
            return self._context_parallel(query, key, value, packed_seq_params, dropout)
        groups = packed_seq_params.length_groups
        assert groups.num_tokens == query.shape[0], "cu_seqlens must cover every packed token"
        outputs = []
        for length, count, index in zip(groups.lengths, groups.counts, groups.indices):
            q, k, v = (x[index].reshape(count, length, *x.shape[1:]) for x in (query, key, value))
            outputs.append(self._attend(q, k, v, dropout).reshape(count * length, -1))
        return torch.cat(outputs)[groups.inverse_order]

    def _context_parallel(self, query, key, value, packed_seq_params, dropout):
        assert self.causal, "context parallelism splits the causal LLM only"
        shard = packed_seq_params.context
        groups = packed_seq_params.context_length_groups
        assert groups.num_local_tokens == query.shape[0], "one query per token this CP rank holds"
        key, value = (
            gather_from_sequence_parallel_region(x, tensor_parallel_output_grad=True, group=shard.group)[
                shard.gathered_to_global.to(x.device)
            ]
            for x in (key, value)
        )
        outputs = []
        for length, count, queries, keys, mask in zip(
            groups.lengths, groups.counts, groups.query_indices, groups.key_indices, groups.masks
        ):
            q = query[queries].reshape(count, length // shard.size, *query.shape[1:])
            k, v = (x[keys].reshape(count, length, *x.shape[1:]) for x in (key, value))
            outputs.append(self._attend(q, k, v, dropout, mask).reshape(count * length // shard.size, -1))
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


@dataclasses.dataclass(frozen=True)
class ContextLengthGroups:
    """Under context parallelism, the segments of ``cu_seqlens`` grouped by length, as one CP rank attends them."""

    lengths: tuple[int, ...]
    """Global lengths of the segments; a rank holds length / CP tokens of each."""
    counts: tuple[int, ...]
    query_indices: tuple[torch.Tensor, ...]
    """Per length: the positions of the segments' local tokens among this rank's tokens, segment after segment."""
    key_indices: tuple[torch.Tensor, ...]
    """Per length: the segments' global token positions, segment after segment."""
    masks: tuple[torch.Tensor, ...]
    """Per length: bool [length / CP, length], a local query (its in-segment position) sees the keys up to itself."""
    inverse_order: torch.Tensor
    """Puts the concatenated per-length outputs back in this rank's token order."""
    num_local_tokens: int


def _context_length_groups(shard: ContextShard) -> ContextLengthGroups:
    bounds = shard.cu_seqlens.tolist()
    device = shard.cu_seqlens.device
    cp, rank = shard.size, shard.rank
    by_length: dict[int, list[int]] = {}
    for start, end in itertools.pairwise(bounds):
        by_length.setdefault(end - start, []).append(start)
    queries, keys, masks = [], [], []
    for length, starts in by_length.items():
        starts = torch.tensor(starts, dtype=torch.long, device=device)
        queries.append((starts[:, None] // cp + torch.arange(length // cp, device=device)).reshape(-1))
        keys.append((starts[:, None] + torch.arange(length, device=device)).reshape(-1))
        chunk = length // (2 * cp)
        own = torch.arange(chunk, device=device)
        positions = torch.cat([rank * chunk + own, (2 * cp - 1 - rank) * chunk + own])
        masks.append(torch.arange(length, device=device)[None, :] <= positions[:, None])
    return ContextLengthGroups(
        lengths=tuple(by_length),
        counts=tuple(len(starts) for starts in by_length.values()),
        query_indices=tuple(queries),
        key_indices=tuple(keys),
        masks=tuple(masks),
        inverse_order=torch.argsort(torch.cat(queries)),
        num_local_tokens=bounds[-1] // cp,
    )


@dataclasses.dataclass
class PackedSegments(PackedSeqParams):
    """megatron's THD ``PackedSeqParams`` (self-attention: q and kv share ``cu_seqlens``) that also groups its
    segments by length for ``PackedDotProductAttention``, once per forward rather than in every layer: the
    grouping reads ``cu_seqlens`` on the host. Transformer Engine never asks for it, so it costs nothing there;
    TE reads only the fields of ``PackedSeqParams``.

    Under context parallelism ``context`` is this rank's shard, ``cu_seqlens_*`` are the micro-batch's global
    segments (as TE's CP attention takes them) and ``cu_seqlens_*_padded`` are the same tensor: every document is
    already padded to a multiple of 2 x CP, so TE needs no padding of its own (and avoids its THD paths that
    mishandle padding, TE #3331)."""

    context: ContextShard | None = None

    @functools.cached_property
    def length_groups(self) -> LengthGroups:
        return _length_groups(self.cu_seqlens_q)

    @functools.cached_property
    def context_length_groups(self) -> ContextLengthGroups:
        return _context_length_groups(self.context)


def packed_seq_params(cu_seqlens: torch.Tensor, context: ContextShard | None = None) -> PackedSegments:
    """megatron's THD ``PackedSeqParams`` for self-attention within the segments of ``cu_seqlens``; ``context``:
    this CP rank's shard of them (``cu_seqlens`` are then the global segments)."""
    cu_seqlens = cu_seqlens.to(torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    padded = cu_seqlens if context is not None else None
    return PackedSegments(
        qkv_format="thd",
        cu_seqlens_q=cu_seqlens,
        cu_seqlens_kv=cu_seqlens,
        cu_seqlens_q_padded=padded,
        cu_seqlens_kv_padded=padded,
        max_seqlen_q=longest,
        max_seqlen_kv=longest,
        context=context,
    )
