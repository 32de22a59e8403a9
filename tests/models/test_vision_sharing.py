"""The vision work share on its own: the assignment by cost, and encode_shared over 3 gloo ranks against one
process encoding everything (the rows each rank receives and the encoder's gradient summed over the ranks).

The encoder here is a linear map of each item's patches, merged 4 to 1, so the expected rows and gradient are
plain arithmetic; the whole-model CP tests run the real ViT and projector through the same function."""

import pytest
import torch

from megatron_vl.models.vision_sharing import balanced_assignment
from tests.multirank import run_ranks

MERGE = 4
# Items of 8, 4, 12, 0 + 4 (an item the only one on its rank), 16 patches: 2, 1, 3, 1, 4 merged rows.
PATCHES = (8, 4, 12, 4, 16)
WIDTH = 3


@pytest.mark.parametrize("costs, ranks, expected", [
    ((5, 4, 3, 3, 1), 2, (0, 1, 1, 0, 1)),  # longest first to the least loaded: loads 8 and 8
    ((1, 1, 1, 1), 3, (0, 1, 2, 0)),  # equal costs: the earlier item first, ties to the lower rank
    ((7,), 4, (0,)),  # fewer items than ranks: ranks 1-3 encode nothing
    ((), 2, ()),
])
def test_items_go_longest_first_to_the_least_loaded_rank(costs, ranks, expected):
    assert balanced_assignment(costs, ranks) == expected


def test_the_assignment_is_within_one_item_of_the_even_share():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        costs = (torch.rand(int(torch.randint(1, 40, (1,), generator=generator)), generator=generator) * 100).tolist()
        ranks = int(torch.randint(1, 9, (1,), generator=generator))
        assignment = balanced_assignment(costs, ranks)
        assert assignment == balanced_assignment(list(costs), ranks)
        loads = [sum(cost for cost, rank in zip(costs, assignment) if rank == r) for r in range(ranks)]
        assert max(loads) <= sum(costs) / ranks + max(costs) + 1e-9


def _inputs():
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(sum(PATCHES), WIDTH, generator=generator)
    weight = torch.randn(WIDTH * MERGE, 2, generator=generator)
    rows = sum(PATCHES) // MERGE
    # Receivers interleave, so every rank gets rows of items encoded elsewhere and rank 2 gets rows of every item.
    receiver = torch.tensor([0, 2, 1, 2, 1, 2, 0, 2, 2, 1, 0][:rows])
    assert receiver.numel() == rows
    return pixels, weight, receiver


def _encode(weight):
    def encode(pixel_values, grid_thw):
        return pixel_values.reshape(-1, WIDTH * MERGE) @ weight
    return encode


def _share_over_three_ranks():
    import torch.distributed as dist

    from megatron_vl.models.vision_sharing import VisionWorkShare, encode_shared

    pixels, weight, receiver = _inputs()
    weight.requires_grad_(True)
    group = dist.new_group([0, 1, 2])
    # Item 3 alone on rank 1, the rest on ranks 0 and 2; then rank 1 with nothing to encode.
    share = VisionWorkShare(group=group, encoder=(0, 2, 2, 1, 0), patches=PATCHES,
                            rows=tuple(count // MERGE for count in PATCHES), receiver=receiver)
    grid = torch.tensor([[1, 2, count // 2] for count in PATCHES])

    def nothing():  # zero rows with a gradient path into the weight
        return (weight[:0] @ torch.zeros(2, 2)).reshape(0, 2)

    received = encode_shared(_encode(weight), pixels, grid, share, nothing_to_encode=nothing)
    # Each row's gradient is a function of its global id, so a row put in the wrong place changes the sum.
    ids = torch.nonzero(receiver == dist.get_rank()).reshape(-1)
    (received * (ids[:, None] + 1.0)).sum().backward()
    grad = weight.grad.clone()
    dist.all_reduce(grad, group=group)

    idle = VisionWorkShare(group=group, encoder=(0, 2, 2, 2, 0), patches=PATCHES,
                           rows=tuple(count // MERGE for count in PATCHES), receiver=receiver)
    weight.grad = None
    idle_rows = encode_shared(_encode(weight), pixels, grid, idle, nothing_to_encode=nothing)
    (idle_rows * (ids[:, None] + 1.0)).sum().backward()
    idle_grad = weight.grad.clone()
    dist.all_reduce(idle_grad, group=group)
    return {"rows": received.detach(), "grad": grad, "idle_rows": idle_rows.detach(), "idle_grad": idle_grad}


def test_every_rank_receives_its_rows_and_the_encoder_gets_the_gradient_of_encoding_all_in_one_place():
    pixels, weight, receiver = _inputs()
    weight.requires_grad_(True)
    everything = _encode(weight)(pixels, None)
    (everything * (torch.arange(receiver.numel())[:, None] + 1.0)).sum().backward()
    for rank, result in enumerate(run_ranks(_share_over_three_ranks, 3)):
        mine = everything[receiver == rank].detach()
        assert torch.allclose(result["rows"], mine, atol=1e-6), rank
        assert torch.allclose(result["idle_rows"], mine, atol=1e-6), rank
        assert torch.allclose(result["grad"], weight.grad, atol=1e-5), rank
        assert torch.allclose(result["idle_grad"], weight.grad, atol=1e-5), rank
