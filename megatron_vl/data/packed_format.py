"""The packed dataset on disk, the contract between ``data_prep pack`` and the training loader: its names,
the ``PackedSample`` and manifest fields, and the reader. The writer is ``data_prep.pack.packed_shard_writer``.

A packed dataset is a directory of webdataset shards ``packed-000000.tar``, ... (uncompressed tar,
members grouped by sample key), one offsets index per shard ``packed-000000.index.npy`` (int64
[num_samples + 1]: the byte offset of each sample's first tar header, then the end of the last
sample) for random access, and ``manifest.json``. One sample is one packed sequence of exactly
``seq_len`` tokens; its members are, in this order:

    {key}.tokens.npy        int32 [S]
    {key}.labels.npy        int32 [S]     next token of the same document, else the pad id
    {key}.loss_mask.npy     uint8 [S]     1 where labels[j] is a text token its document trains on
    {key}.position_ids.npy  int32 [3, S]  M-RoPE (t, h, w), restarting at 0 for each document
    {key}.seq_lens.npy      int32 [D]     document lengths; the padding tail is S - sum
    {key}.meta.json         {"image_grid_thw", "documents", "num_padding"}
    {key}.img{k}.png        the k-th image of the sequence, at its resized size

Shards are written byte-for-byte reproducibly (fixed member order, mtimes and owners) and
atomically (a temporary name, then a rename), so a rerun can trust any shard that exists.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import struct
import tarfile
from pathlib import Path

import numpy as np


FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARRAY_MEMBERS = {  # member suffix -> (dtype, number of dimensions)
    "tokens.npy": ("<i4", 1),
    "labels.npy": ("<i4", 1),
    "loss_mask.npy": ("|u1", 1),
    "position_ids.npy": ("<i4", 2),
    "seq_lens.npy": ("<i4", 1),
}
IMAGE_MEMBER = re.compile(r"img(\d+)\.png")


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


@dataclasses.dataclass(kw_only=True)
class PackedSample:
    """One packed sequence: whole documents back to back, then padding to ``seq_len``."""

    tokens: np.ndarray
    """int32 [S] token ids; one ``<|image_pad|>`` per merged vision token."""
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
    documents: list[dict]
    """Per document: kind, source (shard, key), length, num_images, loss_tokens and more provenance."""
    num_padding: int
    """Padding tokens at the end (S - sum(seq_lens))."""

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def cu_seqlens(self) -> np.ndarray:
        """int32 [D + 1] document boundaries, as flash attention takes them."""
        return np.concatenate([[0], np.cumsum(self.seq_lens)]).astype(np.int32)

    def problems(self) -> list[str]:
        """What is inconsistent inside this sample (empty when it is well formed)."""
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
        except (ValueError, OSError) as error:
            raise ValueError(f"{where}: cannot parse a member ({error}); the shard is damaged, re-run pack") from None
        image_numbers = sorted(int(m.group(1)) for name in members if (m := IMAGE_MEMBER.fullmatch(name)))
        if image_numbers != list(range(len(image_numbers))):
            raise ValueError(f"{where}: image members are numbered {image_numbers}, expected 0..n-1")
        sample = cls(
            **arrays,
            images=[members[f"img{k}.png"] for k in image_numbers],
            image_grid_thw=[tuple(grid) for grid in meta.get("image_grid_thw", [])],
            documents=meta.get("documents", []),
            num_padding=meta.get("num_padding", -1),
        )
        problems = sample.problems()
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))
        return sample


@dataclasses.dataclass(kw_only=True)
class ShardEntry:
    """One packed shard as the manifest records it."""

    name: str
    """File name of the shard inside the dataset directory."""
    num_samples: int
    """Packed sequences in the shard."""
    bytes: int
    """Size of the shard file."""
    sha256: str
    """sha256 of the shard file."""
    index_sha256: str
    """sha256 of its offsets index file (see ``index_name``)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"packed-\d{6}\.tar", self.name):
            raise ValueError(f"shard name {self.name!r} is not packed-NNNNNN.tar")
        if self.num_samples < 1 or self.bytes < 1:
            raise ValueError(f"shard {self.name}: num_samples and bytes must be positive")


@dataclasses.dataclass(kw_only=True)
class KindStats:
    """Token counts of one data kind in a packed dataset."""

    documents: int = 0
    """Documents of this kind (a split document counts once per part)."""
    tokens: int = 0
    """All their tokens: text, vision markers, image placeholders and end-of-document."""
    image_tokens: int = 0
    """Of which ``<|image_pad|>`` placeholders."""
    loss_tokens: int = 0
    """Tokens the loss is computed on."""
    images: int = 0
    """Images."""

    def add(self, other: "KindStats") -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass(kw_only=True)
class PackedManifest:
    """``manifest.json`` of a packed dataset: what it holds and how it was made."""

    format_version: int = FORMAT_VERSION
    """Version of this layout; readers refuse versions they do not know."""
    seq_len: int
    """Tokens in every packed sequence."""
    tokenizer_fingerprint: str
    """sha256 of the tokenizer the text was encoded with."""
    special_ids: dict[str, int]
    """Special token -> id (``<|image_pad|>``, ``<|vision_start|>``, ...) of that tokenizer."""
    pad_id: int
    """Id filling tokens and labels past the documents."""
    image_settings: dict
    """Image preprocessing settings (min/max pixels, patch, merge sizes) of the sample shards."""
    pack_settings: dict
    """Options that decide the output: seed, window, shard_size, long_doc."""
    sources: list[dict]
    """Input sample-shard datasets: path, sha256 of their ingest manifest, samples read."""
    shards: list[ShardEntry]
    """The shards, in order."""
    num_samples: int
    """Packed sequences in all shards."""
    num_documents: int
    """Documents packed (a split document counts once per part)."""
    tokens_per_kind: dict[str, KindStats]
    """Token counts per data kind."""
    padding_fraction: float
    """Padding tokens / (num_samples * seq_len)."""
    dropped: dict[str, int]
    """Documents not packed, by reason."""
    split_documents: int
    """Documents longer than seq_len that were split into parts."""
    document_length_histogram: dict
    """``{"edges": [...], "counts": [...]}``: documents per length bucket [edges[i], edges[i+1])."""

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"packed dataset format version {self.format_version} is not {FORMAT_VERSION}, the one this "
                "megatron-vl reads; re-pack the data with this version's `python -m data_prep pack`"
            )
        if self.seq_len < 1:
            raise ValueError(f"manifest seq_len must be positive, got {self.seq_len}")
        self.shards = [entry if isinstance(entry, ShardEntry) else ShardEntry(**entry) for entry in self.shards]
        self.tokens_per_kind = {
            kind: stats if isinstance(stats, KindStats) else KindStats(**stats)
            for kind, stats in self.tokens_per_kind.items()
        }
        names = [entry.name for entry in self.shards]
        if len(set(names)) != len(names):
            raise ValueError("manifest lists a shard twice")
        if self.num_samples != sum(entry.num_samples for entry in self.shards):
            raise ValueError(
                f"manifest num_samples {self.num_samples} is not the sum of its shards' sample counts"
            )
        if not 0.0 <= self.padding_fraction <= 1.0:
            raise ValueError(f"manifest padding_fraction {self.padding_fraction} is outside [0, 1]")
        document_tokens = sum(stats.tokens for stats in self.tokens_per_kind.values())
        expected_padding = self.num_samples * self.seq_len - document_tokens
        if self.num_samples and round(self.padding_fraction * self.num_samples * self.seq_len) != expected_padding:
            raise ValueError(
                f"manifest padding_fraction {self.padding_fraction} disagrees with its token counts "
                f"({expected_padding} padding tokens in {self.num_samples} x {self.seq_len})"
            )

    @property
    def num_tokens(self) -> int:
        return self.num_samples * self.seq_len

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def load(cls, directory: Path) -> "PackedManifest":
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ValueError(
                f"{path} does not exist: {directory} is not a (finished) packed dataset; "
                "make one with `python -m data_prep pack`"
            )
        try:
            fields = json.loads(path.read_text())
            return cls(**fields)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); re-run pack") from None
        except TypeError as error:
            raise ValueError(f"{path} has missing or unknown fields ({error}); re-run pack") from None

    def check_compatible(self, *, seq_len: int, tokenizer_fingerprint: str, image_settings: dict) -> None:
        """Refuse a dataset made for another sequence length, tokenizer or image preprocessing."""
        wanted = {"seq_len": seq_len, "tokenizer_fingerprint": tokenizer_fingerprint}
        for name, value in wanted.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"packed dataset has {name}={getattr(self, name)!r} but the run wants {value!r}; "
                    "re-pack the data for this run or fix the run's config"
                )
        differing = {
            name: (self.image_settings.get(name), value)
            for name, value in image_settings.items()
            if self.image_settings.get(name) != value
        }
        if differing:
            raise ValueError(
                f"packed dataset's image settings differ from the run's (dataset, run): {differing}; "
                "re-pack the data with the run's image settings"
            )


class PackedDataset:
    """Random access to the samples of a packed dataset: ``read(shard, i)`` or ``dataset[global_i]``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.manifest = PackedManifest.load(self.directory)
        self.shard_sizes = [entry.num_samples for entry in self.manifest.shards]
        self._first_sample = np.cumsum([0] + self.shard_sizes)
        self._offsets: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.manifest.num_samples

    def offsets(self, shard: int) -> np.ndarray:
        """Byte offsets of the samples of ``shard`` (one more than its sample count)."""
        if shard not in self._offsets:
            entry = self.manifest.shards[shard]
            path = self.directory / index_name(entry.name)
            offsets = np.load(path, allow_pickle=False)
            if offsets.shape != (entry.num_samples + 1,):
                raise ValueError(
                    f"{path} holds {len(offsets) - 1} offsets but the manifest says {entry.num_samples} "
                    "samples; run `python -m data_prep verify` on the dataset"
                )
            self._offsets[shard] = offsets
        return self._offsets[shard]

    def read(self, shard: int, index: int) -> PackedSample:
        entry = self.manifest.shards[shard]
        if not 0 <= index < entry.num_samples:
            raise IndexError(f"{entry.name} has {entry.num_samples} samples, asked for sample {index}")
        start, end = self.offsets(shard)[index : index + 2]
        with open(self.directory / entry.name, "rb") as file:
            file.seek(int(start))
            chunk = file.read(int(end - start))
        key = sample_key(shard, index)
        mismatch = (
            f"{self.directory / entry.name} sample {index}: the offsets index does not match the shard; "
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
        return PackedSample.from_tar_members(members, where=f"{self.directory / entry.name} sample {key}")

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, index in that shard) of sample ``index`` of the dataset."""
        if not 0 <= index < len(self):
            raise IndexError(f"packed dataset has {len(self)} samples, asked for {index}")
        shard = int(np.searchsorted(self._first_sample, index, side="right")) - 1
        return shard, index - int(self._first_sample[shard])

    def __getitem__(self, index: int) -> PackedSample:
        return self.read(*self.locate(index))
