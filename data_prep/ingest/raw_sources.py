"""The inputs of ``ingest``: JSONL files (one raw record per line, images in files) and existing
webdataset tars (one raw record per key, images as members of the same key), each read from a local
path, a URL or a ``pipe:`` command (``input_locations``) with retries (``input_streams``).

A webdataset sample is the group of consecutive members sharing a key (the member name up to the
first dot of its file name). Its ``{key}.json`` holds a raw record whose image fields name members
of the key by their suffix (``"image": "jpg"`` is ``{key}.jpg``, ``"video": "mp4"`` is ``{key}.mp4``).
Caption shards as img2dataset and video2dataset write them (``{key}.jpg`` or ``{key}.mp4`` + ``{key}.txt``,
a JSON of metadata without raw fields) also work: for a (video) caption record without ``caption`` the
``txt`` member is the caption, and a single-image (single-video) record without ``image`` (``video``)
takes the key's only image (video) member. Frame folders do not exist in tars: list the frame members.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from collections.abc import Iterator

import fsspec

from data_prep.ingest.input_locations import is_tar, is_url, public_location
from data_prep.ingest.input_streams import (
    RetrySettings, UnreadableInput, describe_failure, open_location, read_errors, read_with_retries,
)
from data_prep.ingest.rejects import RejectError, RejectReason
from data_prep.webdataset_tar import iter_keyed_members

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
VIDEO_SUFFIXES = ("mp4", "m4v", "mov", "mkv", "webm", "avi")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkItem:
    """One input document, as it travels to a worker process."""

    source: dict
    """``{"file", "line"}`` or ``{"tar", "key"}``: where it came from (logged and stored); ``{"file"}`` or
    ``{"tar"}`` alone for an input that could not be read to its end."""
    unreadable: str | None = None
    """Not a document: why its input could not be read to its end after all retries (a reject)."""
    record: bytes | None = None
    """JSONL input: the line."""
    image_root: str | None = None
    """JSONL input: the directory (or URL folder) relative image paths start from."""
    members: dict[str, bytes] | None = None
    """Webdataset input: member suffix -> bytes of the key."""

    def read_image(self, reference: str) -> bytes:
        """Bytes of the image a record refers to; RejectError when it does not exist."""
        return self._read(reference, "image", RejectReason.MISSING_IMAGE, RejectReason.UNREADABLE_IMAGE)

    def read_video(self, reference: str) -> bytes:
        """Bytes of the video file (or frame file) a record refers to; RejectError when it does not exist."""
        return self._read(reference, "video", RejectReason.MISSING_VIDEO, RejectReason.UNREADABLE_VIDEO)

    def list_frames(self, folder: str) -> list[str]:
        """References of the image files of a frame folder (a path ending in ``/``), in name order."""
        if self.members is not None:
            raise RejectError(RejectReason.BAD_SCHEMA, f"frame folder {folder} in a webdataset tar: a tar has no "
                                                       "folders; list the frame members instead")
        remote = is_url(self.image_root)
        path = posixpath.join(self.image_root, folder) if remote else os.path.join(self.image_root, folder)
        try:
            if remote:
                filesystem, root = fsspec.core.url_to_fs(path)
                names = [posixpath.basename(entry.rstrip("/")) for entry in filesystem.ls(root, detail=False)]
            else:
                names = os.listdir(path)
        except FileNotFoundError:
            raise RejectError(RejectReason.MISSING_VIDEO, f"frame folder {path} does not exist") from None
        except read_errors() as error:
            raise RejectError(RejectReason.UNREADABLE_VIDEO, f"cannot list frame folder {path}: {error}") from None
        return [folder + name for name in sorted(names) if name.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES]

    def _read(self, reference: str, noun: str, missing: RejectReason, unreadable: RejectReason) -> bytes:
        if self.members is not None:
            if reference not in self.members:
                raise RejectError(
                    missing, f"no member {self.source['key']}.{reference} in the tar (members: {sorted(self.members)})"
                )
            return self.members[reference]
        remote = is_url(self.image_root)
        path = posixpath.join(self.image_root, reference) if remote else os.path.join(self.image_root, reference)
        try:
            with fsspec.open(path, "rb") if remote else open(path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            raise RejectError(missing, f"{noun} file {path} does not exist") from None
        except read_errors() as error:
            raise RejectError(unreadable, f"cannot read {noun} file {path}: {error}") from None


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
    if kind in ("caption", "video_caption") and "caption" not in record and "txt" in members:
        record["caption"] = members["txt"].decode("utf-8", errors="replace")
    images = [suffix for suffix in members if suffix.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES]
    if kind in ("caption", "ocr", "grounding", "gui") and "image" not in record and len(images) == 1:
        record["image"] = images[0]
    videos = [suffix for suffix in members if suffix.rsplit(".", 1)[-1].lower() in VIDEO_SUFFIXES]
    if kind in ("video_caption", "video_grounding") and "video" not in record and len(videos) == 1:
        record["video"] = videos[0]
    return record


def count_documents(location: str) -> int | None:
    """Non-blank lines of a local JSONL file (for the progress bar); None for tars and remote inputs
    (unknown until read, and counting would read them twice)."""
    if is_tar(location) or is_url(location):
        return None
    with open_location(location) as file:
        return sum(1 for line in file if line.strip())


def iter_items(location: str, image_root: str | None, retry: RetrySettings) -> Iterator[WorkItem]:
    """The documents of one input location; blank JSONL lines are not documents and are passed over.
    An input that cannot be read to its end (after retries) ends with one ``unreadable`` item."""
    public = public_location(location)
    if is_tar(location):
        try:
            for key, members in read_with_retries(location, iter_keyed_members, lambda sample: sample[0], retry):
                yield WorkItem(source={"tar": public, "key": key}, members=members)
        except UnreadableInput as failure:
            yield WorkItem(source={"tar": public}, unreadable=describe_failure(failure))
        return
    if image_root is None:
        image_root = posixpath.dirname(location) if is_url(location) else os.path.dirname(location)
    try:
        for number, line in read_with_retries(location, _numbered_lines, lambda numbered: numbered[0], retry):
            yield WorkItem(source={"file": public, "line": number}, record=line, image_root=image_root)
    except UnreadableInput as failure:
        yield WorkItem(source={"file": public}, unreadable=describe_failure(failure))


def _numbered_lines(stream) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line
