"""Read boxes of tensors from a megatron-core ``torch_dist`` checkpoint, whatever layout saved it.

The checkpoint is PyTorch DCP: ``.metadata`` lists every key's global shape and the chunks the saving
ranks wrote, and ``__R_T.distcp`` files hold the chunks. A read asks DCP's loader for boxes of global
tensors (through a load planner that places each box into its own buffer), so only the chunks overlapping
the box are read: one layer of a stacked key costs one layer's bytes, however many TP / PP ranks wrote it.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import CheckpointException, FileSystemReader
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.planner import LoadPlan, ReadItem
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from checkpoints_tools.dist_placement import Region

DCP_METADATA = ".metadata"
MEGATRON_METADATA = "metadata.json"


class _BoxLoadPlanner(DefaultLoadPlanner):
    """Reads the requested boxes of global tensors into fresh buffers."""

    def __init__(self, boxes: list[tuple[str, Region]], buffers: list[torch.Tensor]) -> None:
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self.boxes = boxes
        self.buffers = {(key, tuple(offsets)): buffer for (key, (offsets, _)), buffer in zip(boxes, buffers)}

    def create_local_plan(self) -> LoadPlan:
        items = []
        for key, (offsets, sizes) in self.boxes:
            chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))
            items += create_read_items_for_chunk_list(key, self.metadata.state_dict_metadata[key], [chunk])
        return LoadPlan(items)

    def resolve_tensor(self, read_item: ReadItem) -> torch.Tensor:
        view = self.buffers[(read_item.dest_index.fqn, tuple(read_item.dest_index.offset))]
        for dim, (offset, length) in enumerate(zip(read_item.dest_offsets, read_item.lengths)):
            view = view.narrow(dim, offset, length)
        return view

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        """The data was copied into the buffer itself."""


class _CachedMetadataReader(FileSystemReader):
    def __init__(self, path: Path, metadata: Metadata) -> None:
        super().__init__(path)
        self._metadata = metadata

    def read_metadata(self) -> Metadata:
        return self._metadata


class DistCheckpointReader:
    """One iteration directory of a ``torch_dist`` checkpoint.

    Opening it checks that it is a megatron dist checkpoint, that ``.metadata`` reads, and that every
    ``.distcp`` file the metadata refers to exists and is long enough, naming the file that is not.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        config_path = self.directory / MEGATRON_METADATA
        try:
            backend = json.loads(config_path.read_text()).get("sharded_backend")
        except FileNotFoundError:
            raise ValueError(f"{config_path} is missing: {self.directory} is not a megatron-core dist checkpoint") from None
        except (json.JSONDecodeError, AttributeError) as error:
            raise ValueError(f"{config_path} is corrupt ({error}); the checkpoint cannot be read") from None
        if backend != "torch_dist":
            raise ValueError(
                f"{self.directory} was saved with the {backend!r} backend; only 'torch_dist' (megatron-core's "
                "default, --ckpt-format torch_dist) is supported"
            )
        metadata_path = self.directory / DCP_METADATA
        try:
            self.metadata = FileSystemReader(self.directory).read_metadata()
        except FileNotFoundError:
            raise ValueError(
                f"{metadata_path} is missing: the save of {self.directory} did not finish or files were lost"
            ) from None
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as error:
            raise ValueError(f"{metadata_path} is corrupt ({error!r}); restore the checkpoint from a copy") from None
        self._check_files()
        self._reader = _CachedMetadataReader(self.directory, self.metadata)

    def _check_files(self) -> None:
        needed: dict[str, int] = {}
        for info in self.metadata.storage_data.values():
            needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
        for name, length in sorted(needed.items()):
            path = self.directory / name
            if not path.is_file():
                raise ValueError(f"{path} is missing: the dist checkpoint {self.directory} is incomplete")
            size = path.stat().st_size
            if size < length:
                raise ValueError(
                    f"{path} is truncated ({size} bytes, the metadata needs {length}); the checkpoint is corrupt"
                )

    def shape(self, key: str) -> tuple[int, ...] | None:
        """The global shape stored under ``key``, or None if the checkpoint has no such tensor."""
        entry = self.metadata.state_dict_metadata.get(key)
        return tuple(entry.size) if isinstance(entry, TensorStorageMetadata) else None

    def dtype(self, key: str) -> torch.dtype:
        return self.metadata.state_dict_metadata[key].properties.dtype

    def read(self, boxes: list[tuple[str, Region]]) -> list[torch.Tensor]:
        """The given boxes (key, (offsets, sizes)) of global tensors, each in the dtype it was saved in."""
        buffers = [torch.empty(sizes, dtype=self.dtype(key)) for key, (_, sizes) in boxes]
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # one process on purpose
                dcp.load({}, storage_reader=self._reader, planner=_BoxLoadPlanner(boxes, buffers), no_dist=True)
        except (Exception, CheckpointException) as error:  # noqa: BLE001 - DCP wraps item failures; name the files
            files = sorted({
                info.relative_path
                for index, info in self.metadata.storage_data.items()
                if index.fqn in {key for key, _ in boxes}
            })
            raise ValueError(
                f"reading {[key for key, _ in boxes]} from {self.directory} failed ({_first_line(error)}); "
                f"the file(s) {files} are corrupt: restore the checkpoint from a copy"
            ) from None
        return buffers


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
