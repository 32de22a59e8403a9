"""Check a packed dataset: its manifest and every checksum; with --deep, every sample's content.

The default check reads every shard and offsets index once and compares sizes and sha256 digests
with manifest.json; it also refuses shards the manifest does not list. --deep reads every sample
and checks what training relies on: labels are the next token of the same document, the loss
mask never covers images, videos, vision markers or padding, image and video placeholders match
their grids, image PNG sizes match their grids, each video's frame members are all there (as many
as its grid's temporal patches need) and of its grid's size, positions are the M-RoPE positions of
each document (videos with the manifest's tokens_per_second), and the token counts add up to the
manifest's. Exits 1 and lists every problem on any mismatch, 0 when all is well.

example:
  python -m data_prep verify packed/8k --deep
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

import numpy as np

from data_prep.pack.statistics import document_kind_stats
from megatron_vl.data.packed_format import PackedDataset, index_name
from megatron_vl.data.packed_manifest import MANIFEST_NAME, KindStats, PackedManifest
from megatron_vl.data.sample_checks import SampleContract, check_packed_sample
from megatron_vl.data.storage import is_url
from megatron_vl.files import sha256_file
from megatron_vl.progress import ProgressBar, track

LISTED_FILE = re.compile(r"packed-\d{6}(\.tar|\.index\.npy)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="packed dataset directory (holding manifest.json)")
    parser.add_argument("--deep", action="store_true", help="also check the content of every sample")


def run(args: argparse.Namespace) -> int:
    if is_url(args.directory):
        raise ValueError(
            f"verify reads a local folder, not the URL {args.directory}: it lists the folder and hashes every file, "
            "so run it where the dataset was made before uploading it, or on a local copy "
            "(e.g. `aws s3 sync URL DIR`); `inspect` reads URLs"
        )
    problems = verify_dataset(Path(args.directory), deep=args.deep)
    if problems:
        print(f"\n{args.directory}: {len(problems)} problem{'' if len(problems) == 1 else 's'}")
        for problem in problems:
            print(f"  {problem}")
        return 1
    manifest = PackedManifest.load(Path(args.directory))
    checked = "checksums and every sample" if args.deep else "checksums"
    print(f"\n{args.directory}: OK ({len(manifest.shards)} shards, {manifest.num_samples} samples; {checked})")
    return 0


def verify_dataset(directory: Path, *, deep: bool = False, progress: bool = True) -> list[str]:
    """Every problem found in the dataset (an empty list when it is intact)."""
    try:
        manifest = PackedManifest.load(directory)
    except ValueError as error:
        return [str(error)]
    problems = []
    listed = {name for entry in manifest.shards for name in (entry.name, index_name(entry.name))}
    for path in sorted(directory.iterdir()):
        if path.name != MANIFEST_NAME and path.name not in listed:
            kind = "shard" if LISTED_FILE.fullmatch(path.name) else "file"
            problems.append(f"{path.name}: {kind} not listed in {MANIFEST_NAME}")
    for entry in track(manifest.shards, desc="checksums", unit="shard", enabled=progress):
        shard, index = directory / entry.name, directory / index_name(entry.name)
        if not shard.is_file():
            problems.append(f"{entry.name}: missing")
        elif shard.stat().st_size != entry.bytes:
            problems.append(f"{entry.name}: {shard.stat().st_size} bytes, manifest says {entry.bytes}")
        elif sha256_file(shard) != entry.sha256:
            problems.append(f"{entry.name}: sha256 differs from the manifest (the file changed or is damaged)")
        if not index.is_file():
            problems.append(f"{index.name}: missing")
        elif sha256_file(index) != entry.index_sha256:
            problems.append(f"{index.name}: sha256 differs from the manifest")
    if deep and not problems:
        problems += _verify_samples(directory, manifest, progress)
    return problems


def _verify_samples(directory: Path, manifest: PackedManifest, progress: bool) -> list[str]:
    dataset = PackedDataset(directory)
    contract = SampleContract.of_manifest(manifest)
    problems = []
    totals: dict[str, KindStats] = collections.defaultdict(KindStats)
    lengths = []
    with ProgressBar(total=len(dataset), desc="samples", unit="sample", enabled=progress) as bar:
        for shard, entry in enumerate(manifest.shards):
            offsets = dataset.offsets(shard)
            if np.any(np.diff(offsets) <= 0) or offsets[-1] > entry.bytes:
                problems.append(f"{index_name(entry.name)}: offsets are not increasing inside the shard")
                continue
            for i in range(entry.num_samples):
                bar.update()
                try:
                    sample = dataset.read(shard, i)
                except ValueError as error:
                    problems.append(str(error))
                    continue
                problems += [f"{entry.name} sample {i}: {problem}" for problem in check_packed_sample(sample, contract)]
                for kind, counts in document_kind_stats(sample, contract.image_pad_id, contract.video_pad_id):
                    totals[kind] += counts
                lengths += sample.seq_lens.tolist()
    problems += _totals_problems(manifest, totals, lengths)
    return problems


def _totals_problems(manifest: PackedManifest, totals: dict[str, KindStats], lengths: list[int]) -> list[str]:
    problems = []
    if dict(totals) != manifest.tokens_per_kind:
        problems.append(f"token counts of the samples {dict(totals)} differ from the manifest's tokens_per_kind")
    if len(lengths) != manifest.num_documents:
        problems.append(f"{len(lengths)} documents in the samples, manifest says {manifest.num_documents}")
    histogram = manifest.document_length_histogram
    counts, _ = np.histogram(lengths, bins=histogram.edges)
    if counts.tolist() != histogram.counts:
        problems.append("document length histogram differs from the samples")
    return problems
