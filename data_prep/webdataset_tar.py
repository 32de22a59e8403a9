"""Reading webdataset tars: samples are runs of consecutive members that share a key."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator


def iter_keyed_members(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {suffix: bytes})`` of each sample of a tar, streamed in order.

    A member's key is its name up to the first dot of its file name (folders included), its
    suffix the rest (``a/b.img0.png`` -> key ``a/b``, suffix ``img0.png``).
    """
    key, members = None, {}
    with tarfile.open(path, mode="r|") as tar:
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
    if key is not None:
        yield key, members
