"""The inputs of ``ingest``: JSONL files (one raw record per line, images on disk) and existing
webdataset tars (one raw record per key, images as members of the same key).

A webdataset sample is the group of consecutive members sharing a key (the member name up to the
first dot of its file name). Its ``{key}.json`` holds a raw record whose image fields name members
of the key by their suffix (``"image": "jpg"`` is ``{key}.jpg``). Caption shards as img2dataset
writes them (``{key}.jpg`` + ``{key}.txt``, a JSON of metadata without raw fields) also work: for
a caption record without ``caption`` the ``txt`` member is the caption, and a single-image record
without ``image`` takes the key's only image member.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from collections.abc import Iterator

from data_prep.ingest.raw_schema import RejectError
from data_prep.ingest.rejects import RejectReason
from data_prep.webdataset_tar import iter_keyed_members

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
TAR_SUFFIX = ".tar"
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkItem:
    """One input document, as it travels to a worker process."""

    source: dict
    """``{"file", "line"}`` or ``{"tar", "key"}``: where it came from (logged and stored)."""
    record: bytes | None = None
    """JSONL input: the line."""
    image_root: str | None = None
    """JSONL input: the directory relative image paths start from."""
    members: dict[str, bytes] | None = None
    """Webdataset input: member suffix -> bytes of the key."""

    def read_image(self, reference: str) -> bytes:
        """Bytes of the image a record refers to; RejectError when it does not exist."""
        if self.members is not None:
            if reference not in self.members:
                raise RejectError(
                    RejectReason.MISSING_IMAGE,
                    f"no member {self.source['key']}.{reference} in the tar (members: {sorted(self.members)})",
                )
            return self.members[reference]
        path = os.path.join(self.image_root, reference)
        try:
            with open(path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            raise RejectError(RejectReason.MISSING_IMAGE, f"image file {path} does not exist") from None
        except OSError as error:
            raise RejectError(RejectReason.UNREADABLE_IMAGE, f"cannot read image file {path}: {error}") from None


def webdataset_record(members: dict[str, bytes], default_kind: str | None) -> dict:
    """The raw record of a webdataset key (see the module docstring)."""
    record = {}
    if "json" in members:
        try:
            record = json.loads(members["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RejectError(RejectReason.BAD_JSON, f"member json is not valid JSON: {error}") from None
        if not isinstance(record, dict):
            raise RejectError(RejectReason.BAD_JSON, f"member json holds a {type(record).__name__}, not an object")
    kind = record.get("kind", default_kind)
    if kind == "caption" and "caption" not in record and "txt" in members:
        record["caption"] = members["txt"].decode("utf-8", errors="replace")
    images = [suffix for suffix in members if suffix.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES]
    if kind in ("caption", "ocr", "grounding") and "image" not in record and len(images) == 1:
        record["image"] = images[0]
    return record


def find_inputs(paths: list[str]) -> list[str]:
    """The JSONL and tar files named by ``paths`` (directories are searched recursively, sorted)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            matches = [
                os.path.join(folder, name)
                for folder, _, names in os.walk(path)
                for name in names
                if name.endswith(JSONL_SUFFIXES + (TAR_SUFFIX,))
            ]
            if not matches:
                raise ValueError(f"input directory {path} holds no *.jsonl, *.jsonl.gz or *.tar files")
            found.extend(sorted(matches))
        elif os.path.isfile(path):
            if not path.endswith(JSONL_SUFFIXES + (TAR_SUFFIX,)):
                raise ValueError(f"input {path} is neither JSONL (*.jsonl, *.jsonl.gz) nor a webdataset tar (*.tar)")
            found.append(path)
        else:
            raise ValueError(f"input {path} does not exist")
    return found


def count_documents(path: str) -> int | None:
    """Non-blank lines of a JSONL file (for the progress bar); None for tars (unknown until read)."""
    if path.endswith(TAR_SUFFIX):
        return None
    with _open_jsonl(path) as file:
        return sum(1 for line in file if line.strip())


def _open_jsonl(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def iter_items(path: str, image_root: str | None) -> Iterator[WorkItem]:
    """The documents of one input file; blank JSONL lines are not documents and are passed over."""
    if path.endswith(TAR_SUFFIX):
        yield from _iter_tar(path)
        return
    root = image_root if image_root is not None else os.path.dirname(path)
    with _open_jsonl(path) as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield WorkItem(source={"file": path, "line": number}, record=line, image_root=root)


def _iter_tar(path: str) -> Iterator[WorkItem]:
    for key, members in iter_keyed_members(path):
        yield WorkItem(source={"tar": path, "key": key}, members=members)
