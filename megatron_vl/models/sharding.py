"""Full (TP=1, PP=1) tensors <-> this rank's shards of a ``VLModel``, one rule for every parameter.

A tensor-parallel parameter carries megatron's attributes ``tensor_model_parallel``, ``partition_dim``
and ``partition_stride``. With stride ``k`` the full tensor is ``k`` blocks along ``partition_dim``, each
split over the TP ranks, and a rank holds its slice of every block: this is how a SwiGLU ``linear_fc1``
([gate; up], stride 2) keeps gate and up together on each rank, where plain chunking would hand one rank
only gates. Vocabulary rows are zero-padded up to the padded vocabulary on load and cut back on gather.
Pipeline stages hold layers under local indices; full state dicts use global ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist

from megatron_vl.models.vl_model import VLModel

_LAYERS = "language_model.decoder.layers."
_VOCAB_PARAMS = ("language_model.embedding.word_embeddings.weight", "language_model.output_layer.weight")


def global_name(model: VLModel, name: str) -> str:
    """The TP=1 PP=1 name of this stage's parameter ``name`` (LLM layers renumbered from the first stage)."""
    if not name.startswith(_LAYERS):
        return name
    index, rest = name[len(_LAYERS) :].split(".", 1)
    return f"{_LAYERS}{int(index) + model.language_layer_offset}.{rest}"


def _pieces(tensor: torch.Tensor, param: torch.nn.Parameter) -> tuple[torch.Tensor, ...]:
    """``tensor`` cut into the pieces one rank's shard of ``param`` is made of (``partition_stride`` per shard)."""
    local = param.shape[param.partition_dim] // getattr(param, "partition_stride", 1)
    return tensor.split(local, dim=param.partition_dim)


def shard(full: torch.Tensor, param: torch.nn.Parameter, tp_rank: int, tp_size: int) -> torch.Tensor:
    """This TP rank's part of ``full`` for ``param`` (``full`` itself if ``param`` is not TP-sharded)."""
    if not getattr(param, "tensor_model_parallel", False):
        return full
    dim = param.partition_dim
    missing_rows = param.shape[dim] * tp_size - full.shape[dim]
    if missing_rows > 0:
        full = torch.cat([full, full.new_zeros(*full.shape[:dim], missing_rows, *full.shape[dim + 1 :])], dim=dim)
    return torch.cat(_pieces(full, param)[tp_rank::tp_size], dim=dim)


def unshard(shards: list[torch.Tensor], param: torch.nn.Parameter) -> torch.Tensor:
    """The full tensor from every TP rank's shard of ``param`` (in rank order); inverse of ``shard``."""
    if not getattr(param, "tensor_model_parallel", False):
        return shards[0]
    per_rank = [_pieces(part, param) for part in shards]
    return torch.cat([pieces[i] for i in range(len(per_rank[0])) for pieces in per_rank], dim=param.partition_dim)


def load_full_state_dict(model: VLModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy full TP=1 PP=1 tensors (global names, e.g. from ``hf_mapping.from_hf``) into this rank's shards."""
    tp_rank, tp_size = model.tp_group.rank(), model.tp_group.size()
    missing, mismatched = [], []
    with torch.no_grad():
        for name, param in model.named_parameters():
            full_name = global_name(model, name)
            if full_name not in state_dict:
                missing.append(full_name)
                continue
            local = shard(state_dict[full_name], param, tp_rank, tp_size)
            if local.shape != param.shape:
                mismatched.append(f"{full_name}: {tuple(state_dict[full_name].shape)}")
                continue
            param.copy_(local)
    if missing or mismatched:
        raise ValueError(
            f"the state dict does not fit this model: missing {missing[:5]}, wrong shape {mismatched[:5]}; "
            "check that the model config matches the checkpoint"
        )


def gather_full_state_dict(
    model: VLModel, value: Callable[[torch.nn.Parameter], torch.Tensor] = lambda param: param.detach()
) -> dict[str, torch.Tensor]:
    """``value(param)`` of every parameter of this pipeline stage as a full tensor under its global name.

    A collective over the TP group: every TP rank must call it. ``value`` picks what to gather, e.g.
    ``lambda p: p.main_grad`` for gradients.
    """
    group = model.tp_group
    full = {}
    for name, param in model.named_parameters():
        tensor = value(param).contiguous()
        if getattr(param, "tensor_model_parallel", False) and group.size() > 1:
            shards = [torch.empty_like(tensor) for _ in range(group.size())]
            dist.all_gather(shards, tensor, group=group)
            tensor = unshard(shards, param)
        if name in _VOCAB_PARAMS:
            tensor = tensor[: model.model_config.language.vocab_size]
        full[global_name(model, name)] = tensor
    return full
