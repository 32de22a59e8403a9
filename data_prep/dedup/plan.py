"""Decide which documents of a partitioned ingest are duplicates, exactly as one ingest process would.

Reads every partition's image hashes (written by ``ingest --partition``), replays them in the global
input order (inputs sorted, documents in file order: the order of a one-process ingest of the same
sorted inputs) through the same deduplicator, and writes ``dedup_plan.json`` next to the partition
folders: which samples of which partition to drop, and why. ``dedup-apply`` then drops them per
partition. Refuses while a partition is missing or unfinished.

example:
  python -m data_prep dedup-plan --input shards/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_prep.ingest.image_dedup import ImageDeduplicator
from data_prep.ingest.rejects import RejectReason
from data_prep.partitions import require_finished
from data_prep.sample_shards.manifest import IMAGE_HASHES_NAME, MANIFEST_NAME, load_manifest
from megatron_vl.files import sha256_file, write_atomically
from megatron_vl.progress import track

PLAN_NAME = "dedup_plan.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="DIR",
                        help="the --out of `ingest --partition I/N` (holding the partition folders)")


def run(args: argparse.Namespace) -> int:
    plan = make_plan(Path(args.input))
    write_atomically(Path(args.input) / PLAN_NAME, (json.dumps(plan, indent=1, sort_keys=True) + "\n").encode())
    dropped = sum(len(keys) for keys in plan["dropped"].values())
    print(f"{Path(args.input) / PLAN_NAME}: {dropped} duplicate documents to drop across {plan['partitions']} "
          "partitions; run dedup-apply for each partition")
    return 0


def make_plan(directory: Path) -> dict:
    """``{"partitions", "manifests": {folder: sha256}, "dropped": {folder: {key: {"reason", "detail"}}}}``."""
    found = require_finished(directory)
    manifests = {path.name: load_manifest(path) for _, path in found}
    settings = {(tuple(manifest.dedup.kinds), manifest.dedup.near_dup_distance) for manifest in manifests.values()}
    if len(settings) > 1:
        raise ValueError(f"the partitions of {directory} were ingested with different --dedup-kinds / --near-dup "
                         f"({sorted(settings, key=str)}); re-ingest them with the same options")
    (_, near_dup_distance), = settings
    records = []
    for _, path in found:
        with open(path / IMAGE_HASHES_NAME, encoding="utf-8") as file:
            records.extend((record["input"], record["ordinal"], path.name, record["key"], record["sha256s"],
                            record["phashes"]) for record in map(json.loads, file))
    records.sort(key=lambda record: record[:2])
    deduplicator = ImageDeduplicator(near_dup_distance)
    dropped: dict[str, dict[str, dict]] = {path.name: {} for _, path in found}
    for _, _, folder, key, sha256s, phashes in track(records, desc="dedup-plan", unit="document"):
        duplicate = deduplicator.find(sha256s, phashes)
        if duplicate is None:
            deduplicator.add(f"{folder}/{key}", sha256s, phashes)
            continue
        match, earlier = duplicate
        reason = RejectReason.DUPLICATE_IMAGE if match == "exact" else RejectReason.NEAR_DUPLICATE_IMAGE
        dropped[folder][key] = {"reason": reason.value,
                                "detail": f"its images are {match} duplicates of those of sample {earlier}"}
    return {
        "partitions": found[0][0].count,
        "manifests": {path.name: sha256_file(path / MANIFEST_NAME) for _, path in found},
        "dropped": dropped,
    }
