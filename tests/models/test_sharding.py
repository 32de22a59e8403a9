"""The tensor-parallel sharding rule agrees with megatron's own layout, including strided SwiGLU fc1 and padded vocab."""

import torch
from megatron.core.tensor_parallel.layers import _initialize_affine_weight_cpu

from megatron_vl.models.sharding import shard, unshard


def _param(shape, *, dim=0, stride=1, parallel=True):
    param = torch.nn.Parameter(torch.empty(shape))
    if parallel:
        param.tensor_model_parallel, param.partition_dim, param.partition_stride = True, dim, stride
    return param


def test_strided_shards_are_megatrons_and_keep_gate_with_up():
    tp, rows, cols = 2, 8, 3
    for stride, dim in ((1, 0), (2, 0), (1, 1)):
        shape = (rows // tp, cols) if dim == 0 else (rows, cols)
        full_shape = (rows, cols) if dim == 0 else (rows, cols * tp)
        shards = []
        for rank in range(tp):
            param = _param(shape, dim=dim, stride=stride)
            reference = torch.empty(shape)
            torch.manual_seed(0)
            master = _initialize_affine_weight_cpu(
                reference, *full_shape, shape[dim], dim, torch.nn.init.normal_, stride=stride,
                return_master_weight=True, rank=rank, world_size=tp,
            )
            shards.append(shard(master, param, rank, tp))
            assert torch.equal(shards[-1], reference), (stride, dim, rank)
        assert torch.equal(unshard(shards, param), master)

    gate_up = torch.arange(8.0)[:, None]  # gate rows 0-3, up rows 4-7
    glu = _param((4, 1), stride=2)
    assert shard(gate_up, glu, 0, 2).flatten().tolist() == [0, 1, 4, 5]
    assert shard(gate_up, glu, 1, 2).flatten().tolist() == [2, 3, 6, 7]


def test_vocab_rows_are_zero_padded_and_replicated_params_pass_through():
    vocab = torch.arange(5.0)[:, None].expand(5, 2)
    padded = shard(vocab, _param((3, 2)), 1, 2)
    assert padded[:, 0].tolist() == [3, 4, 0]
    norm = torch.ones(4)
    assert shard(norm, _param((4,), parallel=False), 1, 2) is norm
