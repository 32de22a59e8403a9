"""Join the partition folders of a partitioned ingest or pack into one dataset, without copying shards.

--input is the --out of `pack --partition I/N` (or of `ingest` / `dedup-apply` with --partition);
every one of its N partitions must be finished, or the merge names the missing ones and stops. The
merged folder holds the partitions' shards, in partition order, as hard links to the partitions'
files (so --out must be on the same filesystem): packed shards under their own names (pack
--partition I/N numbers them I, I + N, ..., so names and sample keys never collide), sample shards
renumbered; and one manifest listing every shard with its checksum, with the token / sample
statistics, drop and reject counts summed. The loader, `verify` and `inspect` read it as any other
dataset. The same partitions give the same merged bytes.

example:
  python -m data_prep merge --input packed/8k-partitions --out packed/8k
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import shutil
from pathlib import Path

import numpy as np

from data_prep.partitions import require_finished
from data_prep.sample_shards.manifest import MANIFEST_NAME as INGEST_MANIFEST_NAME
from data_prep.sample_shards.manifest import IngestManifest, load_manifest, shard_name
from data_prep.sample_shards.sample_meta import KINDS
from megatron_vl.data.packed_format import index_name
from megatron_vl.data.packed_manifest import MANIFEST_NAME, KindStats, LengthHistogram, PackedManifest
from megatron_vl.files import hard_link, partial_directory, publish_directory

SAME_IN_EVERY_PARTITION = ("seq_len", "tokenizer_fingerprint", "special_ids", "pad_id", "image_settings", "pack_settings")
REJECTS_NAME = "rejects.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="DIR", help="folder holding partition-IIIII-of-NNNNN/ folders")
    parser.add_argument("--out", required=True, metavar="DIR", help="the merged dataset (a new folder)")


def run(args: argparse.Namespace) -> int:
    folders = [path for _, path in require_finished(args.input)]
    out = Path(args.out)
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another folder")
    partial = partial_directory(out)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    if (folders[0] / MANIFEST_NAME).is_file():
        manifest_json = merge_packed(folders, partial)
        summary = "packed dataset"
    else:
        manifest_json = merge_ingested(folders, partial)
        summary = "sample-shard dataset"
    publish_directory(partial, out)
    print(f"{out}: merged {len(folders)} partitions into one {summary} ({len(manifest_json)} bytes of manifest)")
    return 0


def merge_packed(folders: list[Path], out: Path) -> str:
    """Link every partition's packed shards into ``out`` and write the merged manifest.json; returns its text."""
    manifests = [PackedManifest.load(folder) for folder in folders]
    first = manifests[0]
    for folder, manifest in zip(folders, manifests):
        for name in SAME_IN_EVERY_PARTITION:
            if getattr(manifest, name) != getattr(first, name):
                raise ValueError(f"{folder} was packed with another {name} than {folders[0]}; re-pack it with the "
                                 "same tokenizer and options")
    shards = []
    for folder, manifest in zip(folders, manifests):
        for entry in manifest.shards:
            hard_link(folder / entry.name, out / entry.name)
            hard_link(folder / index_name(entry.name), out / index_name(entry.name))
            shards.append(entry)
    stats: dict[str, KindStats] = {}
    dropped: collections.Counter[str] = collections.Counter()
    histogram = np.zeros(len(first.document_length_histogram.counts), dtype=np.int64)
    for manifest in manifests:
        if manifest.document_length_histogram.edges != first.document_length_histogram.edges:
            raise ValueError("partitions have different document-length buckets; re-pack them with one megatron-vl")
        for kind, counts in manifest.tokens_per_kind.items():
            stats[kind] = stats.get(kind, KindStats()) + counts
        dropped.update(manifest.dropped)
        histogram += manifest.document_length_histogram.counts
    num_samples = sum(manifest.num_samples for manifest in manifests)
    padding = num_samples * first.seq_len - sum(kind.tokens for kind in stats.values())
    merged = dataclasses.replace(
        first,
        sources=[source for manifest in manifests for source in manifest.sources],
        shards=shards,
        num_samples=num_samples,
        num_documents=sum(manifest.num_documents for manifest in manifests),
        tokens_per_kind=dict(sorted(stats.items())),
        padding_fraction=padding / (num_samples * first.seq_len),
        dropped=dict(sorted(dropped.items())),
        split_documents=sum(manifest.split_documents for manifest in manifests),
        document_length_histogram=LengthHistogram(edges=first.document_length_histogram.edges,
                                                  counts=histogram.tolist()),
    )
    text = merged.to_json()
    (out / MANIFEST_NAME).write_text(text)
    return text


def merge_ingested(folders: list[Path], out: Path) -> str:
    """Link every partition's sample shards into ``out``, join the reject logs, write the merged
    ingest_manifest.json; returns its text."""
    manifests = [load_manifest(folder) for folder in folders]
    first = manifests[0]
    for folder, manifest in zip(folders, manifests):
        if manifest.dedup.pending:
            raise ValueError(f"{folder} still holds its duplicates across partitions: run dedup-plan and dedup-apply, "
                             "and merge dedup-apply's output")
        for name in ("image_settings", "dedup", "png_compression"):
            if getattr(manifest, name) != getattr(first, name):
                raise ValueError(f"{folder} was ingested with another {name} than {folders[0]}; re-ingest it")
    shards = []
    for folder, manifest in zip(folders, manifests):
        for entry in manifest.shards:
            name = shard_name(len(shards))
            hard_link(folder / entry.name, out / name)
            shards.append(dataclasses.replace(entry, name=name))
    kinds: collections.Counter[str] = collections.Counter()
    rejects: collections.Counter[str] = collections.Counter()
    for manifest in manifests:
        kinds.update(manifest.kinds)
        rejects.update(manifest.rejects)
    with open(out / REJECTS_NAME, "wb") as merged_log:
        for folder in folders:
            with open(folder / REJECTS_NAME, "rb") as log:
                shutil.copyfileobj(log, merged_log)
    merged = IngestManifest(
        num_samples=sum(manifest.num_samples for manifest in manifests),
        num_images=sum(manifest.num_images for manifest in manifests),
        kinds={kind: kinds[kind] for kind in KINDS if kinds[kind]},
        image_settings=first.image_settings,
        shards=shards,
        rejects=dict(sorted(rejects.items())),
        num_rejected=sum(rejects.values()),
        inputs=[document for manifest in manifests for document in manifest.inputs],
        dedup=first.dedup,
        png_compression=first.png_compression,
        arguments={**first.arguments, "partition": f"merged from {len(folders)} partitions"},
    )
    text = merged.to_json()
    (out / INGEST_MANIFEST_NAME).write_text(text)
    return text
