"""``manifest.json`` of a packed dataset: what it holds, how it was made, and whether a run may read it."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.config.validation import fraction, non_negative_int, one_of, positive_int
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.storage import DatasetFiles

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LONG_DOC_POLICIES = ("split", "drop")
SHARD_NAME = re.compile(r"packed-\d{6}\.tar")


@dataclasses.dataclass(frozen=True, kw_only=True)
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
    """sha256 of its offsets index file (see ``packed_format.index_name``)."""

    def __post_init__(self) -> None:
        if not SHARD_NAME.fullmatch(self.name):
            raise ValueError(f"shard name {self.name!r} is not packed-NNNNNN.tar")
        positive_int(f"shard {self.name}", "num_samples", self.num_samples)
        positive_int(f"shard {self.name}", "bytes", self.bytes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KindStats:
    """Token counts of one data kind in a packed dataset."""

    documents: int = 0
    """Documents of this kind (a split document counts once per part)."""
    tokens: int = 0
    """All their tokens: text, vision markers, image and video placeholders and end-of-document."""
    image_tokens: int = 0
    """Of which ``<|image_pad|>`` placeholders."""
    loss_tokens: int = 0
    """Tokens the loss is computed on."""
    images: int = 0
    """Images."""
    video_tokens: int = 0
    """Of which ``<|video_pad|>`` placeholders (manifests written before videos existed have none)."""
    videos: int = 0
    """Videos."""

    def __add__(self, other: "KindStats") -> "KindStats":
        return KindStats(**{
            field.name: getattr(self, field.name) + getattr(other, field.name) for field in dataclasses.fields(self)
        })


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackSettings:
    """The pack options that decide the output (besides the inputs, the tokenizer and seq_len)."""

    seed: int
    """Seed of the document shuffle and of the order of the packed sequences."""
    window: int
    """Documents sorted and packed together."""
    shard_size: int
    """Packed sequences per shard."""
    long_doc: str
    """Policy for documents longer than seq_len: one of ``LONG_DOC_POLICIES``."""
    tokens_per_second: int = 2
    """Temporal M-RoPE positions per second of video (the model's ``vision.tokens_per_second``; 2 is
    Qwen2.5-VL's, and what manifests written before videos existed mean)."""
    document_alignment: int = 1
    """Each document's room in a sequence was planned rounded up to a multiple of this, so that the loader can
    pad every document to it and the row still holds ``seq_len`` tokens: context parallelism over CP ranks
    needs documents of a multiple of 2 x CP tokens. 1 (manifests written before it existed): no room reserved."""

    def __post_init__(self) -> None:
        positive_int("pack settings", "window", self.window)
        positive_int("pack settings", "tokens_per_second", self.tokens_per_second)
        positive_int("pack settings", "document_alignment", self.document_alignment)
        positive_int("pack settings", "shard_size", self.shard_size)
        one_of("pack settings", "long_doc", self.long_doc, LONG_DOC_POLICIES)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackSource:
    """One input sample-shard dataset of a pack."""

    path: str
    """Its directory (absolute)."""
    ingest_manifest_sha256: str
    """sha256 of its ``ingest_manifest.json``."""
    samples: int
    """Samples read from it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LengthHistogram:
    """Documents per length bucket: ``counts[i]`` documents have a length in [edges[i], edges[i + 1])."""

    edges: list[int]
    """Bucket edges in tokens, increasing."""
    counts: list[int]
    """Documents per bucket (one fewer than the edges)."""

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) - 1:
            raise ValueError(f"length histogram: {len(self.counts)} counts for {len(self.edges)} edges")


@dataclasses.dataclass(frozen=True, kw_only=True)
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
    image_settings: ImageSettings
    """Image preprocessing settings (min/max pixels, patch, merge sizes) of the sample shards."""
    pack_settings: PackSettings
    """Options that decide the output: seed, window, shard_size, long_doc, tokens_per_second, document_alignment."""
    sources: list[PackSource]
    """Input sample-shard datasets, in order."""
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
    document_length_histogram: LengthHistogram
    """Documents per length bucket."""

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"packed dataset format version {self.format_version} is not {FORMAT_VERSION}, the one this "
                "megatron-vl reads; re-pack the data with this version's `python -m data_prep pack`"
            )
        positive_int("manifest", "seq_len", self.seq_len)
        for name in ("num_samples", "num_documents", "split_documents"):
            non_negative_int("manifest", name, getattr(self, name))
        names = [entry.name for entry in self.shards]
        if len(set(names)) != len(names):
            raise ValueError("manifest lists a shard twice")
        if self.num_samples != sum(entry.num_samples for entry in self.shards):
            raise ValueError(
                f"manifest num_samples {self.num_samples} is not the sum of its shards' sample counts"
            )
        fraction("manifest", "padding_fraction", self.padding_fraction)
        document_tokens = sum(stats.tokens for stats in self.tokens_per_kind.values())
        expected_padding = self.num_samples * self.seq_len - document_tokens
        if self.num_samples and round(self.padding_fraction * self.num_samples * self.seq_len) != expected_padding:
            raise ValueError(
                f"manifest padding_fraction {self.padding_fraction} disagrees with its token counts "
                f"({expected_padding} padding tokens in {self.num_samples} x {self.seq_len})"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "PackedManifest":
        return config_from_dict(cls, json.loads(text), where="the manifest")

    @classmethod
    def load(cls, directory: str | Path) -> "PackedManifest":
        """The manifest of the packed dataset at ``directory`` (a local folder or a URL)."""
        files = DatasetFiles(directory)
        return cls.parse(read_manifest(files), where=files.path(MANIFEST_NAME))

    @classmethod
    def parse(cls, data: bytes, *, where: str) -> "PackedManifest":
        """The manifest in ``data``, read from ``where`` (named in errors)."""
        try:
            return cls.from_json(data.decode())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{where} is not valid JSON ({error}); re-run pack") from None
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{where}: {error}; re-run pack") from None

    def check_compatible(
        self, *, seq_len: int, tokenizer_fingerprint: str, image_settings: ImageSettings, tokens_per_second: int,
        document_alignment: int = 1,
    ) -> None:
        """Refuse a dataset made for another sequence length, tokenizer, image preprocessing or video time scale,
        or one whose rows lack the room to pad every document to ``document_alignment`` tokens."""
        wanted = {"seq_len": seq_len, "tokenizer_fingerprint": tokenizer_fingerprint}
        for name, value in wanted.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"packed dataset has {name}={getattr(self, name)!r} but the run wants {value!r}; "
                    "re-pack the data for this run or fix the run's config"
                )
        ours, theirs = self.image_settings.to_dict(), image_settings.to_dict()
        differing = {name: (ours[name], value) for name, value in theirs.items() if ours[name] != value}
        if differing:
            raise ValueError(
                f"packed dataset's image settings differ from the run's (dataset, run): {differing}; "
                "re-pack the data with the run's image settings"
            )
        if self.pack_settings.tokens_per_second != tokens_per_second:
            raise ValueError(
                f"packed dataset's video positions count {self.pack_settings.tokens_per_second} per second but the "
                f"model's vision.tokens_per_second is {tokens_per_second}; re-pack the data with "
                f"`python -m data_prep pack --tokens-per-second {tokens_per_second}` or fix the model config"
            )
        if self.pack_settings.document_alignment % document_alignment:
            raise ValueError(
                f"context parallelism pads every document to a multiple of {document_alignment} tokens (2 x CP), but "
                f"this dataset was packed with room for documents aligned to {self.pack_settings.document_alignment}; "
                f"re-pack it with `python -m data_prep pack --document-alignment {document_alignment}` (or a multiple: "
                "16 serves CP up to 8), or lower parallel.context_parallel"
            )


def read_manifest(files: DatasetFiles) -> bytes:
    """The bytes of ``manifest.json`` in ``files``; ``ValueError`` if the dataset has none."""
    try:
        return files.read(MANIFEST_NAME)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ValueError(
            f"{files.path(MANIFEST_NAME)} does not exist: {files.location} is not a (finished) packed dataset; "
            "make one with `python -m data_prep pack`"
        ) from None
