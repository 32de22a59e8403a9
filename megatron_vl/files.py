"""Files that survive a crash, and their checksums: shared by data preparation, the loader and checkpoints."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_atomically(path: str | Path, payload: bytes) -> None:
    """Write a file so that it either holds ``payload`` in full or does not change, even on a crash."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
