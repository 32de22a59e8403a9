"""Context parallelism (CP) over packed micro-batches: which tokens each CP rank holds.

megatron's load-balanced split, per document: every document (``cu_seqlens`` segment, padding segments included)
is cut into 2 x CP equal chunks and CP rank r holds chunks r and 2 x CP - 1 - r, so that under causal attention
each rank has as many query-key pairs as the others. A rank's tokens are kept in this order: document after
document, each as [chunk r | chunk 2 x CP - 1 - r], which is Transformer Engine's THD layout under CP (a document
starting at global offset o starts at o / CP locally). The same indices select tokens, labels, loss mask and the
three M-RoPE position axes, so a token keeps its own positions wherever it goes.

Every document must be a multiple of 2 x CP tokens: the loaders pad them so (``data.batch.aligned_row``).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.distributed as dist


def zigzag_indices(cu_seqlens: torch.Tensor, cp_size: int, cp_rank: int) -> torch.Tensor:
    """Global positions (int64, increasing) of the tokens CP rank ``cp_rank`` of ``cp_size`` holds.

    For ``cu_seqlens`` [0, 8, 16] and CP=2: rank 0 holds [0, 1, 6, 7, 8, 9, 14, 15], rank 1 [2, 3, 4, 5, 10, 11, 12, 13].
    """
    cu = cu_seqlens.to(torch.int64)
    lengths = cu[1:] - cu[:-1]
    parts = 2 * cp_size
    if bool((lengths % parts).any()):
        raise ValueError(
            f"context parallelism over {cp_size} ranks cuts every segment into {parts} chunks, but the segments of "
            f"cu_seqlens {cu.tolist()} have lengths {lengths.tolist()}; pad each document to a multiple of {parts} "
            f"(the loaders do with document_alignment={parts}; pack with --document-alignment {parts})"
        )
    chunk = lengths // parts
    firsts = torch.stack([cu[:-1] + cp_rank * chunk, cu[:-1] + (parts - 1 - cp_rank) * chunk], dim=1).reshape(-1)
    sizes = chunk.repeat_interleave(2)
    offsets = torch.arange(int(sizes.sum()), device=cu.device) - (torch.cumsum(sizes, 0) - sizes).repeat_interleave(sizes)
    return firsts.repeat_interleave(sizes) + offsets


@dataclasses.dataclass(frozen=True, eq=False)
class ContextShard:
    """This CP rank's share of one micro-batch of ``b`` rows of ``s`` tokens (``T = b * s`` read row by row)."""

    group: dist.ProcessGroup
    """The CP group."""
    cu_seqlens: torch.Tensor
    """int32 [n + 1] the micro-batch's segments over its T tokens (global, every one a multiple of 2 x CP)."""
    indices: torch.Tensor
    """int64 [T / CP] global positions of this rank's tokens, in its local order."""

    @property
    def size(self) -> int:
        return self.group.size()

    @property
    def rank(self) -> int:
        return self.group.rank()

    @functools.cached_property
    def rank_indices(self) -> list[torch.Tensor]:
        """Every CP rank's ``indices``, by rank."""
        return [zigzag_indices(self.cu_seqlens, self.size, rank) for rank in range(self.size)]

    @functools.cached_property
    def owner(self) -> torch.Tensor:
        """int64 [T] the CP rank that holds each global token."""
        owner = torch.empty(int(self.cu_seqlens[-1]), dtype=torch.int64, device=self.indices.device)
        for rank, indices in enumerate(self.rank_indices):
            owner[indices] = rank
        return owner

    @functools.cached_property
    def gathered_to_global(self) -> torch.Tensor:
        """Where each global token is in the concatenation of every rank's tokens (rank 0's first): indexing an
        all-gathered [T, ...] tensor with it puts it in global order."""
        return torch.argsort(torch.cat(self.rank_indices))

    def local(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's tokens of ``tensor`` [..., b, s] as [..., 1, T / CP]."""
        flat = tensor.reshape(*tensor.shape[:-2], -1)
        return flat[..., self.indices.to(tensor.device)].unsqueeze(-2)


def context_shard(cu_seqlens: torch.Tensor, group: dist.ProcessGroup | None) -> ContextShard | None:
    """This rank's ``ContextShard`` of the micro-batch whose segments are ``cu_seqlens``; None without CP."""
    if group is None or group.size() == 1:
        return None
    return ContextShard(group=group, cu_seqlens=cu_seqlens, indices=zigzag_indices(cu_seqlens, group.size(), group.rank()))
