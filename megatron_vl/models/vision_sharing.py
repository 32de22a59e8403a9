"""Encode these images on these ranks, return each embedding row to its owner: the ViT's work shared over a group.

Ranks that train on different tokens of the same pictures (the CP ranks of one micro-batch) or on different
micro-batches (data-parallel ranks) need not each run the ViT on all the pictures. A ``VisionWorkShare`` says,
for every vision item (an image or a video) of the group's pictures, which rank encodes it, and for every merged
row the ViT and projector produce, which rank receives it. ``encode_shared`` runs the ViT + projector on this
rank's items only, sends every row to its receiver with one all-to-all, and returns the rows this rank receives
in global row order; the backward sends each row's gradient back to the rank that encoded it, so every item's
gradient is that of encoding it where it is used.

Global row order: the items in order (images, then videos, as ``VLModel.encode_vision`` takes them), each item's
merged rows in its own order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist


def balanced_assignment(costs: Sequence[float], num_ranks: int) -> tuple[int, ...]:
    """The rank that encodes each item: longest first, each to the rank with the least work so far (ties: the
    lower rank; items of equal cost: the earlier first). Deterministic, so every rank computes the same."""
    loads = [0.0] * num_ranks
    assignment = [0] * len(costs)
    for item in sorted(range(len(costs)), key=lambda k: (-costs[k], k)):
        rank = min(range(num_ranks), key=lambda r: (loads[r], r))
        assignment[item] = rank
        loads[rank] += costs[item]
    return tuple(assignment)


@dataclasses.dataclass(frozen=True, eq=False)
class VisionWorkShare:
    """Who encodes each vision item of a group's pictures and who receives each merged row."""

    group: dist.ProcessGroup
    """The ranks that share the work."""
    encoder: tuple[int, ...]
    """Per item, the group rank that encodes it."""
    patches: tuple[int, ...]
    """Per item, its patches (rows of ``pixel_values``: t x h x w)."""
    rows: tuple[int, ...]
    """Per item, its merged rows (patches / merge²)."""
    receiver: torch.Tensor
    """int64 [sum(rows)] per merged row in global row order, the group rank that receives it."""

    def __post_init__(self) -> None:
        assert len(self.encoder) == len(self.patches) == len(self.rows)
        assert self.receiver.numel() == sum(self.rows)

    def _row_ids(self, items: list[int]) -> torch.Tensor:
        starts = torch.tensor([0, *self.rows], dtype=torch.int64).cumsum(0)
        ranges = [torch.arange(int(starts[k]), int(starts[k + 1])) for k in items]
        return torch.cat(ranges) if ranges else torch.zeros(0, dtype=torch.int64)

    def items_of(self, rank: int) -> list[int]:
        return [item for item, encoder in enumerate(self.encoder) if encoder == rank]

    def rows_from(self, source: int, to: int) -> torch.Tensor:
        """Global ids (increasing) of the rows that ``source`` encodes and ``to`` receives."""
        ids = self._row_ids(self.items_of(source))
        return ids[self.receiver.cpu()[ids] == to]


class _ExchangeRows(torch.autograd.Function):
    """all-to-all of rows over ``group``: ``rows`` is sorted by destination, ``send[d]`` rows go to rank d and
    ``receive[s]`` come from rank s, concatenated by source. The backward is the same exchange reversed."""

    @staticmethod
    def forward(ctx, rows, send: list[int], receive: list[int], group):
        ctx.send, ctx.receive, ctx.group = send, receive, group
        return _all_to_all(rows, send, receive, group)

    @staticmethod
    def backward(ctx, grad):
        return _all_to_all(grad.contiguous(), ctx.receive, ctx.send, ctx.group), None, None, None


def _all_to_all(rows: torch.Tensor, send: list[int], receive: list[int], group) -> torch.Tensor:
    output = rows.new_empty(sum(receive), *rows.shape[1:])
    dist.all_to_all_single(output, rows.contiguous(), output_split_sizes=receive, input_split_sizes=send, group=group)
    return output


def encode_shared(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    grid_thw: torch.Tensor,
    share: VisionWorkShare,
    *,
    nothing_to_encode: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """The merged rows this rank receives, in global row order, with this rank running ``encode`` (ViT +
    projector: patches, grids -> merged rows) on its own items only.

    ``pixel_values`` and ``grid_thw`` hold every item of the share. ``nothing_to_encode()`` gives the rows of a
    rank without items: zero rows of the right width, dtype and device, and (when the ViT or projector trains)
    carrying a gradient path into their parameters, so that the backward's exchange runs on every rank and every
    trained parameter gets its (zero) gradient, as megatron's DDP requires.
    """
    rank, size = share.group.rank(), share.group.size()
    mine = share.items_of(rank)
    if mine:
        starts = torch.tensor([0, *share.patches], dtype=torch.int64).cumsum(0).tolist()
        patch_rows = torch.cat([torch.arange(starts[k], starts[k + 1]) for k in mine]).to(pixel_values.device)
        rows = encode(pixel_values[patch_rows], grid_thw[mine])
    else:
        rows = nothing_to_encode()
    ids = share._row_ids(mine)
    receivers = share.receiver.cpu()[ids]
    by_receiver = torch.argsort(receivers, stable=True).to(rows.device)
    send = torch.bincount(receivers, minlength=size).tolist()
    sources = [share.rows_from(source, rank) for source in range(size)]
    received = _ExchangeRows.apply(rows[by_receiver], send, [len(ids) for ids in sources], share.group)
    return received[torch.argsort(torch.cat(sources)).to(received.device)]
