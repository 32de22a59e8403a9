"""Hugging Face safetensors checkpoints read and written one tensor at a time.

The ``safetensors`` package maps whole files into memory (pages it touches count towards the process's
resident memory) and writes a file from a complete dict of tensors. A converter that must stay within a
few tensors of memory on a 7B model needs neither: it reads a tensor with one positioned read into a fresh
buffer, and writes a shard whose header is known up front (shapes and dtypes are planned before any data
exists) by appending each tensor's bytes as it is produced. The format (an 8-byte little-endian header
length, a JSON header of ``{"dtype", "shape", "data_offsets"}`` per tensor, then the data) is the one
``safetensors`` documents; ``safe_open`` and transformers read these files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import torch

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_HEADER_LIMIT = 100 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes lie in a safetensors file."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    """Absolute byte offset of the data in ``file``."""
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors of one safetensors file, checked against the file's size (a truncated file is named)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise ValueError("shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > _HEADER_LIMIT or 8 + header_len > size:
                raise ValueError(f"header length {header_len} does not fit the file of {size} bytes")
            header = json.loads(file.read(header_len))
    except FileNotFoundError:
        raise ValueError(f"safetensors file {path} is missing") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); it is corrupt or truncated: "
                         "copy it again from its source") from None
    data_start = 8 + header_len
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = info["data_offsets"]
            dtype, shape = DTYPES[info["dtype"]], tuple(info["shape"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: the header entry of {name!r} is malformed; the file is corrupt") from None
        expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if end - begin != expected:
            raise ValueError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {list(shape)}; the file is corrupt")
        if data_start + end > size:
            raise ValueError(
                f"{path} is truncated: tensor {name!r} ends at byte {data_start + end} but the file has {size}; "
                "copy it again from its source"
            )
        entries[name] = TensorEntry(path, dtype, shape, data_start + begin, data_start + end)
    return entries


def read_tensor(entry: TensorEntry) -> torch.Tensor:
    """One tensor, read with a single positioned read straight into its own buffer."""
    tensor = torch.empty(entry.shape, dtype=entry.dtype)
    if entry.nbytes:
        with open(entry.file, "rb") as file:
            file.seek(entry.begin)
            if file.readinto(memoryview(tensor.view(-1).view(torch.uint8).numpy())) != entry.nbytes:
                raise ValueError(f"{entry.file} ended while reading a tensor; the file is truncated")
    return tensor


class SafetensorsCheckpoint:
    """A folder of safetensors shards with an index (or one ``model.safetensors``), read tensor by tensor.

    Opening it checks the index, that every shard it names exists, and every shard's header against its size,
    so a missing or truncated shard is reported (by file name) before any conversion starts.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(f"{self.directory} is not a directory; pass the folder holding the safetensors files")
        index = self.directory / INDEX_FILE
        if index.is_file():
            files = self._files_from_index(index)
        elif (self.directory / SINGLE_FILE).is_file():
            files = [self.directory / SINGLE_FILE]
        else:
            found = sorted(self.directory.glob("*.safetensors"))
            if len(found) != 1:
                raise ValueError(
                    f"{self.directory} has no {INDEX_FILE} and {len(found)} *.safetensors files; a sharded "
                    "checkpoint needs its index (save it with save_pretrained)"
                )
            files = found
        self.entries: dict[str, TensorEntry] = {}
        for path in files:
            self.entries.update(read_header(path))
        if index.is_file():
            self._check_index_names(index)

    def _files_from_index(self, index: Path) -> list[Path]:
        try:
            self._weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(self._weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{index} is not a valid safetensors index ({error!r}); restore it from the source") from None
        missing = [name for name in files if not (self.directory / name).is_file()]
        if missing:
            raise ValueError(f"{index} names shard(s) that are missing: {missing}; copy them into {self.directory}")
        return [self.directory / name for name in files]

    def _check_index_names(self, index: Path) -> None:
        for name, file in self._weight_map.items():
            entry = self.entries.get(name)
            if entry is None or entry.file.name != file:
                raise ValueError(f"{index} says {name!r} is in {file}, but that file does not hold it; the index is corrupt")

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def dtype(self, name: str) -> torch.dtype:
        return self.entries[name].dtype

    def get(self, name: str) -> torch.Tensor:
        return read_tensor(self.entries[name])

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self.entries.values())


class ShardedSafetensorsWriter:
    """Writes planned tensors, in the planned order, into shards of at most ``max_shard_bytes`` plus an index.

    ``plan`` lists ``(name, shape, dtype)`` in the order ``write`` will be called. Every shard's header is
    written when the shard is opened, so a tensor's bytes go to disk as soon as it is written.
    """

    def __init__(self, directory: Path, plan: Iterable[tuple[str, tuple[int, ...], torch.dtype]], max_shard_bytes: int):
        self.directory = directory
        self.plan = [(name, tuple(shape), dtype) for name, shape, dtype in plan]
        self.shards = _plan_shards(self.plan, max_shard_bytes)
        count = len(self.shards)
        self.file_names = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        self._position = 0
        self._shard = -1
        self._file = None
        self.bytes_written = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        planned_name, shape, dtype = self.plan[self._position]
        assert name == planned_name and tuple(tensor.shape) == shape and tensor.dtype == dtype, (
            f"tensor {name} {tuple(tensor.shape)} {tensor.dtype} written where the plan has {planned_name} {shape} {dtype}"
        )
        shard = next(i for i, (start, stop) in enumerate(self.shards) if start <= self._position < stop)
        if shard != self._shard:
            self._open_shard(shard)
        data = tensor.detach().contiguous().view(-1).view(torch.uint8)
        self._file.write(memoryview(data.numpy()))
        self.bytes_written += data.numel()
        self._position += 1
        if self._position == self.shards[shard][1]:
            self._file.close()
            self._file = None

    def _open_shard(self, shard: int) -> None:
        start, stop = self.shards[shard]
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, dtype in self.plan[start:stop]:
            nbytes = _nbytes(shape, dtype)
            header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        self._file = open(self.directory / self.file_names[shard], "wb")
        self._file.write(struct.pack("<Q", len(encoded)) + encoded)
        self._shard = shard

    def finish(self) -> None:
        """Write the index; every planned tensor must have been written."""
        assert self._position == len(self.plan) and self._file is None, "not every planned tensor was written"
        weight_map = {
            name: self.file_names[shard]
            for shard, (start, stop) in enumerate(self.shards)
            for name, _, _ in self.plan[start:stop]
        }
        total = sum(_nbytes(shape, dtype) for _, shape, dtype in self.plan)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (self.directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def _plan_shards(plan, max_shard_bytes: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, stop)`` ranges of the plan, each at most ``max_shard_bytes`` unless one tensor is larger."""
    shards, start, size = [], 0, 0
    for position, (_, shape, dtype) in enumerate(plan):
        nbytes = _nbytes(shape, dtype)
        if position > start and size + nbytes > max_shard_bytes:
            shards.append((start, position))
            start, size = position, 0
        size += nbytes
    shards.append((start, len(plan)))
    return shards
