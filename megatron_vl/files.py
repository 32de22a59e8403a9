"""Files and folders that survive a crash, and their checksums: shared by data preparation, the loader,
checkpoints and the checkpoint tools.

A file is written under ``NAME.tmp`` and a folder under ``NAME.partial``; once complete, its data is flushed
to disk (fsync), it is renamed to ``NAME`` and the parent folder is fsynced, so that after a crash ``NAME``
either holds everything or is what it was before. Readers ignore the ``.tmp`` / ``.partial`` names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMPORARY_FILE_SUFFIX = ".tmp"
PARTIAL_DIRECTORY_SUFFIX = ".partial"


def fsync_directory(path: str | Path) -> None:
    """Make the entries of a folder (a rename into it) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to stream into; it appears at ``path`` complete when the block ends without an error.

    On an error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    temporary = path.with_name(path.name + TEMPORARY_FILE_SUFFIX)
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    fsync_directory(path.parent)


def write_atomically(path: str | Path, payload: bytes) -> None:
    """Write a file so that it either holds ``payload`` in full or does not change, even on a crash."""
    with atomic_file(path) as file:
        file.write(payload)


def partial_directory(path: str | Path) -> Path:
    """Where the folder ``path`` is written before ``publish_directory`` moves it into place."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_DIRECTORY_SUFFIX)


def publish_directory(partial: str | Path, final: str | Path) -> None:
    """Flush every file under the complete folder ``partial`` to disk, rename it to ``final`` (which must not
    exist) and make the rename durable."""
    partial, final = Path(partial), Path(final)
    for folder, _, names in os.walk(partial):
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                os.fsync(file.fileno())
        fsync_directory(folder)
    os.rename(partial, final)
    fsync_directory(final.parent)


def hard_link(source: str | Path, target: str | Path) -> None:
    """``target`` becomes another name of ``source``'s bytes (no copy); both must be on one filesystem."""
    try:
        os.link(source, target)
    except OSError as error:
        raise ValueError(f"cannot hard-link {source} to {target} ({error}): put --out on the same filesystem as "
                         "--input") from None


def read_json_object(path: str | Path, *, if_missing: str, if_corrupt: str) -> dict:
    """The JSON object in ``path``; a missing, unparsable or non-object file is a ``ValueError`` naming the path
    and, after it, ``if_missing`` or ``if_corrupt`` (what it means and the fix)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; {if_missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {if_corrupt}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} should hold a JSON object, not {type(value).__name__}; {if_corrupt}")
    return value


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
