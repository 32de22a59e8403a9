"""Writing sample shards: samples go into consecutive shards, each full at a sample count or a byte size."""

from __future__ import annotations

import dataclasses
import os

from data_prep.sample_shards.manifest import SampleShardEntry, shard_name
from data_prep.webdataset_tar import TarShardWriter, sample_size, tar_file_size
from megatron_vl.command_line import parse_byte_size
from megatron_vl.config.validation import positive_int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardLimit:
    """When a shard is full: after ``samples`` samples, or before it would pass ``bytes`` bytes."""

    samples: int | None = None
    """Most samples per shard (None: no limit)."""
    bytes: int | None = None
    """Most bytes per shard file, unless a single sample is larger (None: no limit)."""

    def __post_init__(self) -> None:
        if (self.samples is None) == (self.bytes is None):
            raise ValueError("a shard limit is either a sample count or a byte size, not both or neither")
        positive_int("ShardLimit", "samples", self.samples, optional=True)
        positive_int("ShardLimit", "bytes", self.bytes, optional=True)

    @classmethod
    def parse(cls, text: str) -> "ShardLimit":
        """A plain integer is a sample count (``"1000"``); anything else a byte size such as ``"512MB"``,
        ``"1GiB"`` or ``"64kB"`` (read by ``parse_byte_size``)."""
        if text.strip().isdigit():
            return cls(samples=int(text))
        try:
            return cls(bytes=parse_byte_size(text))
        except ValueError:
            raise ValueError(
                f"shard size {text!r} is neither a sample count (e.g. 1000) nor a byte size (e.g. 512MB, 1GiB)"
            ) from None


class SampleShardWriter:
    """Writes samples into consecutive shards of ``directory``, starting a new one at ``limit``."""

    def __init__(self, directory: str, limit: ShardLimit) -> None:
        self.directory = directory
        self.limit = limit
        self.shards: list[SampleShardEntry] = []
        """Every finished shard."""
        self._shard: TarShardWriter | None = None
        self._samples = self._bytes = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample: member suffix (``json``, ``img0.png``, ...) -> bytes, in that order."""
        size = sample_size(members)
        if self._shard is not None and (
            (self.limit.samples is not None and self._samples >= self.limit.samples)
            or (self.limit.bytes is not None and tar_file_size(self._bytes + size) > self.limit.bytes)
        ):
            self._finish_shard()
        if self._shard is None:
            self._shard = TarShardWriter(self._path())
            self._samples = self._bytes = 0
        self._shard.add_sample(key, members)
        self._samples += 1
        self._bytes += size

    def close(self) -> list[SampleShardEntry]:
        """Finish the last shard; returns the entries of all shards."""
        if self._shard is not None:
            self._finish_shard()
        return self.shards

    def _path(self) -> str:
        return os.path.join(self.directory, shard_name(len(self.shards)))

    def _finish_shard(self) -> None:
        path = self._path()
        self._shard.close()
        self.shards.append(SampleShardEntry(
            name=os.path.basename(path), num_samples=self._samples, bytes=self._shard.size, sha256=self._shard.sha256,
        ))
        self._shard = None
