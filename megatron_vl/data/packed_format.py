"""The packed dataset on disk, the contract between ``data_prep pack`` and the training loader: its names,
the ``PackedSample`` and manifest fields, and the reader. The writer is ``data_prep.pack.packed_shard_writer``.

A packed dataset is a directory of webdataset shards ``packed-000000.tar``, ... (uncompressed tar,
members grouped by sample key), one offsets index per shard ``packed-000000.index.npy`` (int64
[num_samples + 1]: the byte offset of each sample's first tar header, then the end of the last
sample) for random access, and ``manifest.json`` (``packed_manifest``). One sample is one packed sequence of exactly
``seq_len`` tokens; its members are, in this order:

    {key}.tokens.npy        int32 [S]
    {key}.labels.npy        int32 [S]     next token of the same document, else the pad id
    {key}.loss_mask.npy     uint8 [S]     1 where labels[j] is a text token its document trains on
    {key}.position_ids.npy  int32 [3, S]  M-RoPE (t, h, w), restarting at 0 for each document
    {key}.seq_lens.npy      int32 [D]     document lengths; the padding tail is S - sum
    {key}.meta.json         {"image_grid_thw", "documents", "num_padding",
                             "video_grid_thw", "second_per_grid_ts", "video_frames" (frames stored per video)}
    {key}.img{k}.png        the k-th image of the sequence, at its resized size
    {key}.vid{k}.{j:05d}.png  frame j of the k-th video of the sequence, at its resized size (all its frames
                            one size; the loader repeats the last frame to fill the last temporal patch)

Shards written before videos existed have no video members, meta fields or document ``num_videos`` and read
as holding no videos.

Shards are written byte-for-byte reproducibly (fixed member order, mtimes and owners) and
atomically (a temporary name, then a rename), so a rerun can trust any shard that exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import struct
import tarfile
import os

import numpy as np

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.data.packed_manifest import MANIFEST_NAME, PackedManifest, read_manifest
from megatron_vl.data.storage import DEFAULT_RETRY_SECONDS, DatasetFiles

ARRAY_MEMBERS = {  # member suffix -> (dtype, number of dimensions)
    "tokens.npy": ("<i4", 1),
    "labels.npy": ("<i4", 1),
    "loss_mask.npy": ("|u1", 1),
    "position_ids.npy": ("<i4", 2),
    "seq_lens.npy": ("<i4", 1),
}
IMAGE_MEMBER = re.compile(r"img(\d+)\.png")
VIDEO_FRAME_MEMBER = re.compile(r"vid(\d+)\.(\d{5})\.png")
META_FIELDS = ("image_grid_thw", "documents", "num_padding")
VIDEO_META_FIELDS = ("video_grid_thw", "second_per_grid_ts", "video_frames")
"""Fields of ``meta.json`` that shards written before videos existed lack."""


def video_frame_member(k: int, j: int) -> str:
    """Member suffix of frame ``j`` of a sequence's video ``k``."""
    return f"vid{k}.{j:05d}.png"


def shard_name(index: int) -> str:
    return f"packed-{index:06d}.tar"


def index_name(shard: str) -> str:
    return shard.removesuffix(".tar") + ".index.npy"


def sample_key(shard_index: int, sample_index: int) -> str:
    return f"{shard_index:06d}-{sample_index:06d}"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG file's header, without decoding it; None if it is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return height, width


@dataclasses.dataclass(frozen=True, kw_only=True)
class DocumentSource:
    """Which sample of pack's inputs a packed document came from."""

    input: int
    """Position of its sample-shard dataset among pack's inputs."""
    shard: str
    """The sample shard's file name."""
    key: str
    """The sample's key in that shard."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackedDocument:
    """One document of a packed sample: its provenance and counts (an entry of ``meta.json``'s documents)."""

    kind: str
    """Data kind of its sample."""
    source: DocumentSource
    """The sample it came from."""
    origin: dict | None
    """Where that sample came from before ingest (its ``source``: ``{"file", "line"}`` or ``{"tar", "key"}``)."""
    part: tuple[int, int]
    """(i, n): part i of the n parts of a split document; (1, 1) for a whole one."""
    length: int
    """Its tokens in the sequence."""
    num_images: int
    """Its images."""
    loss_tokens: int
    """Its tokens whose label the loss counts."""
    num_videos: int = 0
    """Its videos (records written before videos existed have none)."""

    @classmethod
    def from_dict(cls, values) -> "PackedDocument":
        return config_from_dict(cls, values, where="a document record")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackedSample:
    """One packed sequence: whole documents back to back, then padding to ``seq_len``."""

    tokens: np.ndarray
    """int32 [S] token ids; one ``<|image_pad|>`` / ``<|video_pad|>`` per merged vision token of an image / video."""
    labels: np.ndarray
    """int32 [S]: labels[j] is tokens[j + 1] inside a document, the pad id elsewhere."""
    loss_mask: np.ndarray
    """uint8 [S]: 1 where labels[j] counts in the loss (text the document trains on)."""
    position_ids: np.ndarray
    """int32 [3, S] M-RoPE positions, restarting at 0 for each document; 0 in the padding."""
    seq_lens: np.ndarray
    """int32 [D] lengths of the D documents, in order."""
    images: list[bytes]
    """PNG bytes of each image in order of appearance, already at the resized size."""
    image_grid_thw: list[tuple[int, int, int]]
    """(t, h, w) in patches of each image, in the same order."""
    documents: list[PackedDocument]
    """Per document, its provenance and counts."""
    num_padding: int
    """Padding tokens at the end (S - sum(seq_lens))."""
    videos: list[list[bytes]] = dataclasses.field(default_factory=list)
    """Per video in order of appearance, the PNG bytes of its stored frames, already at the resized size."""
    video_grid_thw: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    """(t, h, w) in patches of each video: t = ceil(frames / temporal_patch_size) temporal patches."""
    second_per_grid_ts: list[float] = dataclasses.field(default_factory=list)
    """Seconds one temporal patch of each video spans."""

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def cu_seqlens(self) -> np.ndarray:
        """int32 [D + 1] document boundaries, as flash attention takes them."""
        return np.concatenate([[0], np.cumsum(self.seq_lens)]).astype(np.int32)

    def structure_problems(self) -> list[str]:
        """What is inconsistent in the shapes of this sample (empty when they fit together); the whole
        contract is ``sample_checks.check_packed_sample``."""
        found = []
        for name, (dtype, ndim) in ARRAY_MEMBERS.items():
            array = getattr(self, name.removesuffix(".npy"))
            if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) or array.ndim != ndim:
                found.append(f"{name} must be a {ndim}-d {np.dtype(dtype)} array")
        if found:
            return found
        size = len(self.tokens)
        if len(self.labels) != size or len(self.loss_mask) != size or self.position_ids.shape != (3, size):
            found.append(
                f"array lengths differ: tokens {size}, labels {len(self.labels)}, loss_mask "
                f"{len(self.loss_mask)}, position_ids {self.position_ids.shape}"
            )
        if int(self.seq_lens.sum()) + self.num_padding != size or np.any(self.seq_lens <= 0):
            found.append(
                f"document lengths {self.seq_lens.tolist()} plus {self.num_padding} padding do not make {size}"
            )
        if len(self.images) != len(self.image_grid_thw):
            found.append(f"{len(self.images)} images but {len(self.image_grid_thw)} grids")
        if not len(self.videos) == len(self.video_grid_thw) == len(self.second_per_grid_ts):
            found.append(f"{len(self.videos)} videos but {len(self.video_grid_thw)} video grids and "
                         f"{len(self.second_per_grid_ts)} second_per_grid_ts")
        if any(not frames for frames in self.videos):
            found.append("a video has no frames")
        if len(self.documents) != len(self.seq_lens):
            found.append(f"{len(self.documents)} document records but {len(self.seq_lens)} document lengths")
        return found

    @classmethod
    def from_tar_members(cls, members: dict[str, bytes], *, where: str = "sample") -> "PackedSample":
        """Parse the members of one sample (suffix -> bytes); ``where`` names it in errors."""
        missing = [name for name in (*ARRAY_MEMBERS, "meta.json") if name not in members]
        if missing:
            raise ValueError(f"{where}: members {missing} are missing; the shard is damaged, re-run pack")
        try:
            arrays = {
                name.removesuffix(".npy"): np.load(io.BytesIO(members[name]), allow_pickle=False)
                for name in ARRAY_MEMBERS
            }
            meta = json.loads(members["meta.json"])
            if not isinstance(meta, dict) or sorted(meta) not in (
                sorted(META_FIELDS), sorted(META_FIELDS + VIDEO_META_FIELDS)
            ):
                raise ValueError(f"meta.json holds {sorted(meta) if isinstance(meta, dict) else meta!r}, "
                                 f"expected the fields {list(META_FIELDS + VIDEO_META_FIELDS)}")
            documents = [PackedDocument.from_dict(document) for document in meta["documents"]]
            grids = [tuple(grid) for grid in meta["image_grid_thw"]]
            video_grids = [tuple(grid) for grid in meta.get("video_grid_thw", [])]
            seconds = [float(value) for value in meta.get("second_per_grid_ts", [])]
            video_frames = [int(count) for count in meta.get("video_frames", [])]
        except (ValueError, TypeError, OSError) as error:
            raise ValueError(f"{where}: cannot parse a member ({error}); the shard is damaged, re-run pack") from None
        image_numbers = sorted(int(m.group(1)) for name in members if (m := IMAGE_MEMBER.fullmatch(name)))
        if image_numbers != list(range(len(image_numbers))):
            raise ValueError(f"{where}: image members are numbered {image_numbers}, expected 0..n-1")
        frame_numbers = sorted((int(m.group(1)), int(m.group(2)))
                               for name in members if (m := VIDEO_FRAME_MEMBER.fullmatch(name)))
        expected_frames = [(k, j) for k, count in enumerate(video_frames) for j in range(count)]
        if frame_numbers != expected_frames:
            raise ValueError(f"{where}: video frame members {frame_numbers} do not match meta.json's video_frames "
                             f"{video_frames}; the shard is damaged, re-run pack")
        sample = cls(
            **arrays,
            images=[members[f"img{k}.png"] for k in image_numbers],
            image_grid_thw=grids,
            documents=documents,
            num_padding=meta["num_padding"],
            videos=[[members[video_frame_member(k, j)] for j in range(count)] for k, count in enumerate(video_frames)],
            video_grid_thw=video_grids,
            second_per_grid_ts=seconds,
        )
        problems = sample.structure_problems()
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))
        return sample


class PackedDataset:
    """Random access to the samples of a packed dataset: ``read(shard, i)`` or ``dataset[global_i]``.

    The dataset is a local folder or a URL (``storage.DatasetFiles``): the manifest and each shard's offsets index
    are read whole, a sample by one byte-range request, so reading sample i costs the same wherever it is."""

    def __init__(self, location: str | os.PathLike, *, retry_seconds: float = DEFAULT_RETRY_SECONDS) -> None:
        self.files = DatasetFiles(location, retry_seconds=retry_seconds)
        self.directory = self.files.location
        """The local folder (absolute) or the URL, as named in messages and loader states."""
        manifest_bytes = read_manifest(self.files)
        self.manifest = PackedManifest.parse(manifest_bytes, where=self.files.path(MANIFEST_NAME))
        self.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        """Identifies the dataset: a loader state records it and refuses to resume on another."""
        self.shard_sizes = [entry.num_samples for entry in self.manifest.shards]
        self._first_sample = np.cumsum([0] + self.shard_sizes)
        self._offsets: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.manifest.num_samples

    def offsets(self, shard: int) -> np.ndarray:
        """Byte offsets of the samples of ``shard`` (one more than its sample count)."""
        if shard not in self._offsets:
            entry = self.manifest.shards[shard]
            name = index_name(entry.name)
            offsets = np.load(io.BytesIO(self.files.read(name)), allow_pickle=False)
            if offsets.shape != (entry.num_samples + 1,):
                raise ValueError(
                    f"{self.files.path(name)} holds {len(offsets) - 1} offsets but the manifest says "
                    f"{entry.num_samples} samples; run `python -m data_prep verify` on the dataset"
                )
            self._offsets[shard] = offsets
        return self._offsets[shard]

    def read(self, shard: int, index: int) -> PackedSample:
        entry = self.manifest.shards[shard]
        if not 0 <= index < entry.num_samples:
            raise IndexError(f"{entry.name} has {entry.num_samples} samples, asked for sample {index}")
        start, end = self.offsets(shard)[index : index + 2]
        chunk = self.files.read(entry.name, int(start), int(end))
        # A shard's sample keys carry the number in its name: pack numbers shards 0, 1, 2, ..., and each of
        # N partitions i, i + N, ..., so that merged partitions keep their shards' names and keys.
        key = sample_key(int(entry.name.removeprefix("packed-").removesuffix(".tar")), index)
        shard_path = self.files.path(entry.name)
        mismatch = (
            f"{shard_path} sample {index}: the offsets index does not match the shard; "
            "run `python -m data_prep verify` on the dataset"
        )
        members = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(chunk), mode="r:") as tar:
                for info in tar:
                    sample, _, suffix = info.name.partition(".")
                    if sample != key:
                        raise ValueError(f"{mismatch} (member {info.name} is not of key {key})")
                    members[suffix] = tar.extractfile(info).read()
        except tarfile.TarError as error:
            raise ValueError(f"{mismatch} ({error})") from None
        return PackedSample.from_tar_members(members, where=f"{shard_path} sample {key}")

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, index in that shard) of sample ``index`` of the dataset."""
        if not 0 <= index < len(self):
            raise IndexError(f"packed dataset has {len(self)} samples, asked for {index}")
        shard = int(np.searchsorted(self._first_sample, index, side="right")) - 1
        return shard, index - int(self._first_sample[shard])

    def __getitem__(self, index: int) -> PackedSample:
        return self.read(*self.locate(index))
