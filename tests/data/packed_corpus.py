"""Small packed datasets made with the real data_prep tools (demo-corpus -> train-tokenizer -> ingest -> pack).

Two datasets of 128-token sequences: ``captions`` (caption pairs) and ``mixed`` (interleaved, text,
cot, grounding and ocr documents), each spread over several shards.
"""

from __future__ import annotations

import dataclasses
import shutil
import tarfile
from pathlib import Path

from data_prep import train_tokenizer
from data_prep.demo import command as demo_corpus
from data_prep.ingest import command as ingest
from data_prep.pack import command as pack
from megatron_vl.config.data import DataConfig
from megatron_vl.data.packed_format import PackedDataset, sample_key, shard_name
from megatron_vl.tokenizer import load_tokenizer
from tests.data_prep.cli import run_subcommand

SEQ_LEN = 128
MIXED_KINDS = ("interleaved", "text", "cot", "grounding", "ocr")


@dataclasses.dataclass(frozen=True)
class PackedCorpus:
    root: Path
    captions: Path
    mixed: Path
    tokenizer_fingerprint: str

    def config(self, **overrides) -> DataConfig:
        """A training config over both datasets (weights 1 : 3) with small batches."""
        values = dict(
            blend=[(str(self.captions), 1.0), (str(self.mixed), 3.0)], seq_len=SEQ_LEN, global_batch_size=8,
            micro_batch_size=2, seed=7, num_workers=0,
        )
        return DataConfig(**{**values, **overrides})

    def copy_of(self, dataset: Path, destination: Path) -> Path:
        """A private copy of a dataset, to damage in a test."""
        return Path(shutil.copytree(dataset, destination))


def build_packed_corpus(root: Path) -> PackedCorpus:
    raw = root / "raw"
    run_subcommand(demo_corpus, "--out", raw, "--samples-per-kind", 32, "--long-samples", 0, "--min-side", 56,
                   "--max-side", 112, "--kinds", "caption", *MIXED_KINDS, "--seed", 5)
    run_subcommand(train_tokenizer, "--input", raw, "--vocab-size", 1024, "--out", root / "tokenizer")
    run_subcommand(ingest, "--input", raw / "caption.jsonl", "--out", root / "samples_captions", "--workers", 1,
                   "--shard-size", 16)
    run_subcommand(ingest, "--input", *[raw / f"{kind}.jsonl" for kind in MIXED_KINDS], "--out",
                   root / "samples_mixed", "--workers", 1, "--shard-size", 32)
    for name, shard_size in (("captions", 3), ("mixed", 7)):
        run_subcommand(pack, "--input", root / f"samples_{name}", "--tokenizer", root / "tokenizer", "--out",
                       root / name, "--seq-len", SEQ_LEN, "--shard-size", shard_size, "--workers", 1)
    return PackedCorpus(
        root=root, captions=root / "captions", mixed=root / "mixed",
        tokenizer_fingerprint=load_tokenizer(root / "tokenizer").fingerprint,
    )


def damage(dataset: Path, sample: int, member: str) -> None:
    """Overwrite the first 8 bytes of ``member`` (e.g. ``img0.png``, ``tokens.npy``) of ``sample``
    (its index in the dataset) in place, leaving the tar and the offsets index intact."""
    sizes = PackedDataset(dataset).shard_sizes
    shard = 0
    while sample >= sizes[shard]:
        sample -= sizes[shard]
        shard += 1
    path = dataset / shard_name(shard)
    with tarfile.open(path) as tar:
        offset = tar.getmember(f"{sample_key(shard, sample)}.{member}").offset_data
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\xde\xad\xbe\xef" * 2)
