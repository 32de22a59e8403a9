"""Webdataset tars: uncompressed tars whose samples are runs of consecutive members sharing a key.

Reading (``iter_keyed_members``) takes ingest's raw webdataset inputs. Writing (``TarShardWriter``)
makes the sample shards and the packed shards: byte-for-byte reproducible (members in the order
given, USTAR headers with zero mtimes and owners and mode 0644) and atomic (``atomic_file``: the
shard appears complete or not at all), with its size and sha256 counted as it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from megatron_vl.files import atomic_file

TAR_BLOCK = 512


def iter_keyed_members(source: str | BinaryIO) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {suffix: bytes})`` of each sample of a tar (a path or a binary stream), streamed in order.

    A member's key is its name up to the first dot of its file name (folders included), its
    suffix the rest (``a/b.img0.png`` -> key ``a/b``, suffix ``img0.png``). A tar that stops before
    its end-of-archive block raises ``tarfile.ReadError`` (tarfile itself takes a cut at a header
    boundary for the end); the samples before the cut have been yielded by then, the last one not.
    """
    key, members = None, {}
    opened = tarfile.open(source, mode="r|") if isinstance(source, str) else tarfile.open(fileobj=source, mode="r|")
    with opened as tar:
        for info in tar:
            if not info.isfile():
                continue
            folder, name = os.path.split(info.name)
            stem, _, suffix = name.partition(".")
            member_key = os.path.join(folder, stem)
            if member_key != key and key is not None:
                yield key, members
                members = {}
            key = member_key
            members[suffix] = tar.extractfile(info).read()
        # tarfile ends the member list on a zero block (read whole) or on a short or empty header read (a cut).
        if tar.fileobj.tell() != tar.offset + TAR_BLOCK:
            name = source if isinstance(source, str) else getattr(source, "name", "the tar stream")
            raise tarfile.ReadError(f"{name} ends at byte {tar.fileobj.tell()} without the end-of-archive block: "
                                    "it is truncated")
    if key is not None:
        yield key, members


def sample_size(members: dict[str, bytes]) -> int:
    """Bytes the members of one sample take in a tar: a header block each, data padded to whole blocks."""
    return sum(TAR_BLOCK + -(-len(payload) // TAR_BLOCK) * TAR_BLOCK for payload in members.values())


def tar_file_size(members_size: int) -> int:
    """Size of a tar file whose members take ``members_size`` bytes: they are followed by two zero
    blocks, and the file is padded to whole records."""
    return -(-(members_size + 2 * TAR_BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class _CountingFile:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


class TarShardWriter:
    """One shard written sample by sample; it appears at ``path`` when ``close`` returns.

    As a context manager, an error inside the block leaves no file behind (nor a temporary one).
    """

    def __init__(self, path: str | Path) -> None:
        self._stack = contextlib.ExitStack()
        self._counting = _CountingFile(self._stack.enter_context(atomic_file(path)))
        self._tar = self._stack.enter_context(
            tarfile.open(fileobj=self._counting, mode="w", format=tarfile.USTAR_FORMAT)
        )
        self.size = 0
        """Bytes of the finished file (set by ``close``)."""
        self.sha256 = ""
        """sha256 of the finished file (set by ``close``)."""

    @property
    def offset(self) -> int:
        """Where the next sample's first header starts (after the last sample: the members' end)."""
        return self._tar.offset

    def add_sample(self, key: str, members: dict[str, bytes]) -> None:
        """Append one sample: ``{key}.{suffix}`` for each member suffix -> bytes, in that order."""
        assert "." not in key, key
        for suffix, payload in members.items():
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            self._tar.addfile(info, io.BytesIO(payload))

    def close(self) -> None:
        """End the tar, flush it to disk and move it into place."""
        self._stack.close()
        self.size = self._counting.size
        self.sha256 = self._counting.sha256.hexdigest()

    def __enter__(self) -> "TarShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._stack.__exit__(*exc)
