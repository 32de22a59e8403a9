"""Join the partition folders of a partitioned ingest or pack into one dataset, without copying shards.

--input is the --out of `pack --partition I/N` (or of `ingest` / `dedup-apply` with --partition);
every one of its N partitions must be finished, or the merge names the missing ones and stops. The
merged folder holds the partitions' shards, in partition order, as hard links to the partitions'
files (so --out must be on the same filesystem): packed shards under their own names (pack
--partition I/N numbers them I, I + N, ..., so names and sample keys never collide), sample shards
renumbered; and one manifest listing every shard with its checksum, with the token / sample
statistics, drop and reject counts summed. The loader, `verify` and `inspect` read it as any other
dataset. The same partitions give the same merged bytes. Partitions with no document left to pack
(pack marks them empty) are skipped and counted; their drop counts are summed. Rerunning the same
merge into the same --out does nothing; an --out holding anything else is refused.

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

from data_prep.partitions import empty_partition_dropped, is_empty, require_finished
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
    empty = [folder for folder in folders if is_empty(folder)]
    folders = [folder for folder in folders if not is_empty(folder)]
    if not folders:
        raise ValueError(f"every partition of {args.input} is empty (no document was left to pack); check the inputs")
    if (folders[0] / MANIFEST_NAME).is_file():
        merged = merge_packed(folders, empty)
        summary = "packed dataset"
    else:
        merged = merge_ingested(folders)
        summary = "sample-shard dataset"
    skipped = f", skipping {len(empty)} empty partitions" if empty else ""
    out = Path(args.out)
    if out.exists():
        _require_same_merge(out, merged)
        print(f"{out} already holds this merge of {len(folders)} partitions{skipped}; nothing to do")
        return 0
    partial = partial_directory(out)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    merged.write(partial)
    publish_directory(partial, out)
    print(f"{out}: merged {len(folders)} partitions{skipped} into one {summary} "
          f"({len(merged.manifest_text)} bytes of manifest)")
    return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Merge:
    """What the merged folder holds: links to the partitions' files, the joined reject logs, one manifest."""

    links: list[tuple[Path, str]]
    """(partition file, its name in the merged folder)."""
    reject_logs: list[Path]
    """Partitions' reject logs, concatenated into one (sample-shard merges only)."""
    manifest_name: str
    """manifest.json (packed) or ingest_manifest.json (sample shards)."""
    manifest_text: str
    """The merged manifest: every shard with its checksum, the summed counts."""

    def write(self, out: Path) -> None:
        for source, name in self.links:
            hard_link(source, out / name)
        if self.reject_logs:
            with open(out / REJECTS_NAME, "wb") as merged_log:
                for path in self.reject_logs:
                    with open(path, "rb") as log:
                        shutil.copyfileobj(log, merged_log)
        (out / self.manifest_name).write_text(self.manifest_text)


def _require_same_merge(out: Path, merged: Merge) -> None:
    """A rerun of the same merge is a no-op: ``out``'s manifest (every shard with its checksum, every count) must
    be the one these partitions give."""
    existing = out / merged.manifest_name
    if not existing.is_file() or existing.read_text() != merged.manifest_text:
        raise ValueError(f"--out {out} holds another dataset than this merge of its partitions (its "
                         f"{merged.manifest_name} differs or is missing); remove it or choose another folder")


def merge_packed(folders: list[Path], empty: list[Path]) -> Merge:
    """The merge of the partitions' packed shards; the ``empty`` partitions add only their drop counts."""
    manifests = [PackedManifest.load(folder) for folder in folders]
    first = manifests[0]
    for folder, manifest in zip(folders, manifests):
        for name in SAME_IN_EVERY_PARTITION:
            if getattr(manifest, name) != getattr(first, name):
                raise ValueError(f"{folder} was packed with another {name} than {folders[0]}; re-pack it with the "
                                 "same tokenizer and options")
    shards, links = [], []
    for folder, manifest in zip(folders, manifests):
        for entry in manifest.shards:
            links += [(folder / entry.name, entry.name), (folder / index_name(entry.name), index_name(entry.name))]
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
    for folder in empty:
        dropped.update(empty_partition_dropped(folder))
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
    return Merge(links=links, reject_logs=[], manifest_name=MANIFEST_NAME, manifest_text=merged.to_json())


def merge_ingested(folders: list[Path]) -> Merge:
    """The merge of the partitions' sample shards (renumbered) and reject logs."""
    manifests = [load_manifest(folder) for folder in folders]
    first = manifests[0]
    for folder, manifest in zip(folders, manifests):
        if manifest.dedup.pending:
            raise ValueError(f"{folder} still holds its duplicates across partitions: run dedup-plan and dedup-apply, "
                             "and merge dedup-apply's output")
        for name in ("image_settings", "video_settings", "dedup", "png_compression"):
            if getattr(manifest, name) != getattr(first, name):
                raise ValueError(f"{folder} was ingested with another {name} than {folders[0]}; re-ingest it")
    shards, links = [], []
    for folder, manifest in zip(folders, manifests):
        for entry in manifest.shards:
            name = shard_name(len(shards))
            links.append((folder / entry.name, name))
            shards.append(dataclasses.replace(entry, name=name))
    kinds: collections.Counter[str] = collections.Counter()
    rejects: collections.Counter[str] = collections.Counter()
    for manifest in manifests:
        kinds.update(manifest.kinds)
        rejects.update(manifest.rejects)
    merged = IngestManifest(
        num_samples=sum(manifest.num_samples for manifest in manifests),
        num_images=sum(manifest.num_images for manifest in manifests),
        kinds={kind: kinds[kind] for kind in KINDS if kinds[kind]},
        image_settings=first.image_settings,
        video_settings=first.video_settings,
        shards=shards,
        rejects=dict(sorted(rejects.items())),
        num_rejected=sum(rejects.values()),
        inputs=[document for manifest in manifests for document in manifest.inputs],
        dedup=first.dedup,
        png_compression=first.png_compression,
        arguments={**first.arguments, "partition": f"merged from {len(folders)} partitions"},
    )
    return Merge(links=links, reject_logs=[folder / REJECTS_NAME for folder in folders],
                 manifest_name=INGEST_MANIFEST_NAME, manifest_text=merged.to_json())
