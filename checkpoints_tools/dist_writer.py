"""Write a megatron-core ``torch_dist`` checkpoint of ``VLModel`` one tensor group at a time.

The checkpoint is the one ``dist_checkpointing.save`` writes at the given TP / PP: the same keys, global
shapes and chunks (each TP rank's piece of each layer), the ``_extra_state`` objects, ``common.pt`` and
``metadata.json``; so megatron loads it at that layout or any other. What differs is how it is produced:
one process plans every chunk up front and DCP's writer asks for the chunks' data one at a time, so a
group of TP=1 tensors (e.g. one layer's fused QKV) is converted only when its first chunk is written and
dropped once its last chunk is. All chunks go to one file: the layout lives in the chunks, not the files.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from megatron.core.dist_checkpointing.core import CheckpointingConfig, save_config
from megatron.core.dist_checkpointing.strategies.common import COMMON_STATE_FNAME
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
from torch.distributed.checkpoint.planner import SavePlan, TensorWriteData, WriteItem, WriteItemType

from checkpoints_tools.dist_placement import ExtraState, Placement

Group = tuple[Placement, ...]
"""TP=1 tensors converted together (the outputs of one weight rule)."""


class _StreamingSavePlanner(DefaultSavePlanner):
    """Plans every chunk from placements and produces each chunk's data only when the writer asks for it."""

    def __init__(
        self,
        groups: list[Group],
        extra_states: list[ExtraState],
        tensor_parallel: int,
        dtype: torch.dtype,
        convert: Callable[[int], dict[str, torch.Tensor]],
    ) -> None:
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self.convert = convert
        self.items: list[WriteItem] = []
        self.chunk_source: dict[MetadataIndex, tuple[int, Placement, tuple]] = {}
        for item in extra_states:
            self.items.append(WriteItem(index=MetadataIndex(item.unique_key), type=WriteItemType.BYTE_IO))
        for group_index, group in enumerate(groups):
            for placement in group:
                global_shape = torch.Size(placement.global_shape(tensor_parallel))
                for box in placement.chunks(tensor_parallel):
                    offsets, sizes = placement.global_box(box)
                    index = MetadataIndex(placement.key, torch.Size(offsets))
                    self.items.append(WriteItem(
                        index=index,
                        type=WriteItemType.SHARD,
                        tensor_data=TensorWriteData(
                            chunk=ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes)),
                            properties=TensorProperties(dtype=dtype),
                            size=global_shape,
                        ),
                    ))
                    self.chunk_source[index] = (group_index, placement, box)
        self._group_index, self._group = None, {}

    def set_up_planner(self, state_dict, storage_meta=None, is_coordinator: bool = False) -> None:
        self.state_dict, self.is_coordinator = state_dict, is_coordinator

    def create_local_plan(self) -> SavePlan:
        self.plan = SavePlan(self.items)
        return self.plan

    def resolve_data(self, write_item: WriteItem):
        if write_item.type == WriteItemType.BYTE_IO:
            # megatron stores a rank's objects of one key as a pickled list; a local linear's state is None.
            buffer = io.BytesIO()
            torch.save([None], buffer)
            buffer.seek(0)
            return buffer
        group_index, placement, (offsets, sizes) = self.chunk_source[write_item.index]
        if group_index != self._group_index:
            self._group = {}  # let the previous group go before the next is read
            self._group_index, self._group = group_index, self.convert(group_index)
        full = self._group[placement.name]
        chunk = full[tuple(slice(offset, offset + size) for offset, size in zip(offsets, sizes))]
        if tuple(chunk.shape) != tuple(sizes):  # the chunk reaches into the zero rows that pad the vocabulary
            padded = full.new_zeros(sizes)
            padded[tuple(slice(0, length) for length in chunk.shape)] = chunk
            chunk = padded
        return chunk.reshape(write_item.tensor_data.chunk.sizes)


def write_dist_checkpoint(
    directory: Path,
    groups: list[Group],
    extra_states: list[ExtraState],
    *,
    tensor_parallel: int,
    dtype: torch.dtype,
    convert: Callable[[int], dict[str, torch.Tensor]],
) -> None:
    """Write the model-only dist checkpoint into the empty ``directory``.

    ``convert(i)`` returns the TP=1 tensors of ``groups[i]`` (by TP=1 name, in ``dtype``); it is called once per
    group, in order.
    """
    planner = _StreamingSavePlanner(groups, extra_states, tensor_parallel, dtype, convert)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # one process on purpose
        dcp.save({}, storage_writer=FileSystemWriter(directory, thread_count=1), planner=planner, no_dist=True)
    # What dist_checkpointing.save writes besides the tensors: the non-sharded part of {"model": ...} and the format.
    torch.save({}, directory / COMMON_STATE_FNAME)
    save_config(CheckpointingConfig("torch_dist", 1), str(directory))
