"""The context-parallel split and the M-RoPE angles each CP rank gets.

The split is megatron's per-document load-balanced one (checked against hard-coded indices); each rank's M-RoPE
angles (``OwnPositionsRotaryEmbedding`` of its own tokens' positions) are, bit for bit, the CP=1 angles of those
tokens. The negative control: megatron-core's stock ``MultimodalRotaryEmbedding`` given the micro-batch's positions
and the CP group slices them as if the packed sequence were one document, and gets other angles on every rank but
the first's first chunk, so the comparison above can fail.
"""

from __future__ import annotations

import pytest
import torch

from megatron_vl.models.context_parallel import ContextShard, zigzag_indices
from tests.multirank import run_ranks

CU_SEQLENS = torch.tensor([0, 8, 16, 28, 32], dtype=torch.int32)
"""Four segments of one 32-token row: two 8-token documents, a 12-token one and a 4-token padding tail."""


class _Group:
    """A CP group seen from one rank, for computations that only ask its size and rank."""

    def __init__(self, size: int, rank: int) -> None:
        self._size, self._rank = size, rank

    def size(self) -> int:
        return self._size

    def rank(self) -> int:
        return self._rank


def test_each_document_is_cut_in_2cp_chunks_and_rank_r_holds_chunks_r_and_2cp_minus_1_minus_r():
    cu = torch.tensor([0, 8, 16])
    assert zigzag_indices(cu, 2, 0).tolist() == [0, 1, 6, 7, 8, 9, 14, 15]
    assert zigzag_indices(cu, 2, 1).tolist() == [2, 3, 4, 5, 10, 11, 12, 13]
    assert zigzag_indices(torch.tensor([0, 8]), 4, 1).tolist() == [1, 6]
    for cp in (2, 4):
        held = torch.cat([zigzag_indices(torch.tensor([0, 8, 16, 24, 32]), cp, rank) for rank in range(cp)])
        assert sorted(held.tolist()) == list(range(32))


def test_a_document_that_is_not_a_multiple_of_2cp_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"lengths \[8, 6\]; pad each document to a multiple of 4 .*--document-alignment 4"):
        zigzag_indices(torch.tensor([0, 8, 14]), 2, 0)


def test_a_shard_selects_every_field_by_the_same_indices():
    shard = ContextShard(group=_Group(2, 1), cu_seqlens=CU_SEQLENS, indices=zigzag_indices(CU_SEQLENS, 2, 1))
    positions = torch.arange(3 * 32).reshape(3, 1, 32)
    local = shard.local(positions)
    assert local.shape == (3, 1, 16)
    assert torch.equal(local[:, 0], positions[:, 0, shard.indices])
    assert shard.owner[shard.indices].eq(1).all() and shard.owner.eq(0).sum() == 16


def _angles() -> dict:
    from megatron.core.models.common.embeddings.rotary_pos_embedding import MultimodalRotaryEmbedding

    from megatron_vl.models.language import OwnPositionsRotaryEmbedding

    generator = torch.Generator().manual_seed(0)
    # M-RoPE positions of the documents: t, h, w differ (as over an image), restarting at 0 in each document.
    positions = torch.cat([torch.randint(0, 9, (3, 1, end - start), generator=generator)
                           for start, end in zip(CU_SEQLENS[:-1].tolist(), CU_SEQLENS[1:].tolist())], dim=2)
    section = [2, 3, 3]
    arguments = dict(kv_channels=16, rotary_percent=1.0, rotary_base=640000)
    whole = OwnPositionsRotaryEmbedding(**arguments)(positions, section)
    results = {"whole": whole}
    for rank in range(2):
        indices = zigzag_indices(CU_SEQLENS, 2, rank)
        results[rank] = {
            "indices": indices,
            "ours": OwnPositionsRotaryEmbedding(**arguments)(positions[:, :, indices], section),
            "stock": MultimodalRotaryEmbedding(**arguments)(positions, section, cp_group=_Group(2, rank)),
        }
    return results


@pytest.fixture(scope="module")
def angles():
    return run_ranks(_angles, 1)[0]


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_gets_the_cp1_angles_of_its_own_tokens(angles, rank):
    expected = angles["whole"][angles[rank]["indices"]]
    assert torch.equal(angles[rank]["ours"], expected)


@pytest.mark.parametrize("rank", [0, 1])
def test_megatrons_stock_mrope_gives_other_angles_under_cp(angles, rank):
    expected = angles["whole"][angles[rank]["indices"]]
    stock = angles[rank]["stock"]
    assert stock.shape == expected.shape
    wrong_rows = (stock != expected).flatten(1).any(dim=1)
    assert wrong_rows.sum() >= 8, f"rank {rank}: only {int(wrong_rows.sum())} of {len(wrong_rows)} rows differ"
