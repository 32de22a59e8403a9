"""Where each ``VLModel`` tensor lies in a megatron-core distributed checkpoint, and how a TP layout cuts it.

megatron-core saves every tensor as one global tensor under a key that does not depend on the layout:

* the layers of a ``TransformerBlock`` are stacked along a leading axis: TP=1 tensor
  ``language_model.decoder.layers.3.mlp.linear_fc2.weight`` is entry 3 of key
  ``language_model.decoder.layers.mlp.linear_fc2.weight``; pipeline stages write their layers at global indices;
* TP-split tensors are stored whole, in their TP=1 layout; a TP layout only decides the chunks each rank writes:
  ``tp`` equal pieces along the split dimension, and for the SwiGLU ``linear_fc1`` ([gate; up]) ``tp`` pieces of
  each half;
* the vocabulary rows (embedding, output layer) are zero-padded to a multiple of TP;
* each linear layer's ``_extra_state`` is a pickled object per layer (``None`` for megatron's local linears),
  replicated over TP.

``Placement`` says all of this for one TP=1 tensor. Which dimension TP splits follows megatron's parallel linears:
column-parallel (``linear_qkv``, ``linear_fc1``, embedding, output layer) split rows, row-parallel (``linear_proj``,
``linear_fc2``) split columns and keep their bias whole. The tests compare a layout described here with the one
megatron's own ``dist_checkpointing.save`` writes.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import torch
from megatron.core.dist_checkpointing.mapping import ShardedObject

from checkpoints_tools.hf_tensor_names import expected_shapes
from megatron_vl.config.model import VLModelConfig
from megatron_vl.models.hf_mapping import weight_rules

_STACKED = re.compile(r"(?P<block>.+\.decoder\.layers)\.(?P<layer>\d+)\.(?P<rest>.+)")
_COLUMN_PARALLEL = ("linear_qkv.weight", "linear_qkv.bias", "linear_fc1.weight", "linear_fc1.bias",
                    "word_embeddings.weight", "output_layer.weight")
_ROW_PARALLEL = ("linear_proj.weight", "linear_fc2.weight")
_VOCAB = ("word_embeddings.weight", "output_layer.weight")
_LINEARS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")

Region = tuple[tuple[int, ...], tuple[int, ...]]
"""(offsets, sizes) of a box inside a global tensor."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """One TP=1 ``VLModel`` tensor inside a dist checkpoint."""

    name: str
    """Its name in the TP=1 PP=1 state dict (global layer indices)."""
    key: str
    """The dist-checkpoint key holding it."""
    shape: tuple[int, ...]
    """Its TP=1 shape (vocabulary rows not padded)."""
    layer: int | None
    """Its index along the stacked-layer axis, or None outside a layer stack."""
    num_layers: int | None
    """Length of the stacked-layer axis."""
    tp_dim: int | None
    """The dimension (of ``shape``) that TP splits, or None when every TP rank holds it whole."""
    gated: bool
    """A SwiGLU ``linear_fc1``: each of its two halves is split over TP separately."""
    vocab: bool
    """Rows are vocabulary entries, padded to a multiple of TP in the checkpoint."""

    def global_shape(self, tensor_parallel: int) -> tuple[int, ...]:
        shape = list(self.shape)
        if self.vocab:
            shape[0] = -(-shape[0] // tensor_parallel) * tensor_parallel
        return self._stacked(shape, self.num_layers)

    def region(self) -> Region:
        """The box of the global tensor that holds this TP=1 tensor (padding rows excluded)."""
        return self._stacked([0] * len(self.shape), self.layer), self._stacked(self.shape, 1)

    def chunks(self, tensor_parallel: int) -> list[Region]:
        """The boxes a save at ``tensor_parallel`` writes, in TP=1 coordinates (padding rows included)."""
        padded = self.global_shape(tensor_parallel)[-len(self.shape) :]
        if self.tp_dim is None or (tensor_parallel == 1 and not self.gated):
            return [((0,) * len(padded), padded)]
        pieces = 2 * tensor_parallel if self.gated else tensor_parallel
        step = padded[self.tp_dim] // pieces
        boxes = []
        for piece in range(pieces):
            offsets, sizes = [0] * len(padded), list(padded)
            offsets[self.tp_dim], sizes[self.tp_dim] = piece * step, step
            boxes.append((tuple(offsets), tuple(sizes)))
        return boxes

    def global_box(self, box: Region) -> Region:
        """A box of ``chunks`` in the coordinates of the global (stacked) tensor."""
        offsets, sizes = box
        return self._stacked(offsets, self.layer), self._stacked(sizes, 1)

    def _stacked(self, values, layer_axis_value) -> tuple[int, ...]:
        return tuple(values) if self.layer is None else (layer_axis_value, *values)


@dataclasses.dataclass(frozen=True)
class ExtraState:
    """One linear layer's ``_extra_state`` object, stored as a pickled ``[None]``."""

    unique_key: str
    """Its dist-checkpoint key (megatron's ``ShardedObject.unique_key``)."""


@functools.lru_cache(maxsize=4)
def megatron_shapes(config: VLModelConfig) -> dict[str, tuple[int, ...]]:
    """TP=1 name -> shape of every ``VLModel`` tensor, from transformers' shapes through the weight rules."""
    hf = expected_shapes(config)
    shapes = {}
    for rule in weight_rules(config):
        outputs = rule.from_hf(*(torch.empty(hf[name], device="meta") for name in rule.hf))
        shapes.update((name, tuple(tensor.shape)) for name, tensor in zip(rule.megatron, outputs))
    return shapes


def _num_layers(config: VLModelConfig, block: str) -> int:
    return config.vision.num_layers if block.startswith("vision_model.") else config.language.num_layers


def placement(config: VLModelConfig, name: str) -> Placement:
    shape = megatron_shapes(config)[name]
    stacked = _STACKED.fullmatch(name)
    key, layer, num_layers = name, None, None
    if stacked:
        key = f"{stacked['block']}.{stacked['rest']}"
        layer, num_layers = int(stacked["layer"]), _num_layers(config, stacked["block"])
    if name.endswith(_COLUMN_PARALLEL):
        tp_dim = 0
    elif name.endswith(_ROW_PARALLEL):
        tp_dim = 1
    else:
        tp_dim = None
    gated = stacked is not None and name.endswith(("linear_fc1.weight", "linear_fc1.bias"))
    return Placement(name, key, shape, layer, num_layers, tp_dim, gated, name.endswith(_VOCAB))


def placements(config: VLModelConfig) -> dict[str, Placement]:
    """Every TP=1 ``VLModel`` tensor's placement, in the order of the weight rules."""
    return {name: placement(config, name) for rule in weight_rules(config) for name in rule.megatron}


def extra_states(config: VLModelConfig) -> list[ExtraState]:
    """The ``_extra_state`` object of every parallel linear layer (the output layer keeps none)."""
    objects = []
    for item in placements(config).values():
        module, kind = item.name.rsplit(".", 1)
        if kind != "weight" or not module.endswith(_LINEARS):
            continue
        key = item.key.rsplit(".", 1)[0] + "._extra_state"
        shape, offset = ((item.num_layers,), (item.layer,)) if item.layer is not None else ((1,), (0,))
        objects.append(ExtraState(ShardedObject(key, None, shape, offset, replica_id=0).unique_key))
    return objects
