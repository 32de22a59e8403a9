"""Drop one partition's duplicates as ``dedup_plan.json`` says, into a new partition folder.

Writes ``OUT/partition-IIIII-of-NNNNN/``: the partition's sample shards without the dropped
samples (shards with none dropped are hard links to the input's, not copies), its reject log with
one line per dropped document appended, and its manifest with the counts updated. Pack reads this
folder. Skipped when finished; a half-written one is redone.

example:
  python -m data_prep dedup-apply --input shards/ --partition 3/8 --out deduped/
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import shutil
from pathlib import Path

from data_prep.dedup.plan import PLAN_NAME
from data_prep.partitions import Partition, finished, mark_finished
from data_prep.sample_shards.manifest import MANIFEST_NAME, SampleShardEntry, load_manifest, shard_name
from data_prep.sample_shards.reader import index_shard, iter_shard
from data_prep.sample_shards.sample_meta import sample_members
from data_prep.webdataset_tar import TarShardWriter
from megatron_vl.files import hard_link, sha256_file, write_atomically

REJECTS_NAME = "rejects.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="DIR", help="the --out of `ingest --partition` and dedup-plan")
    parser.add_argument("--partition", required=True, type=Partition.parse, metavar="I/N", help="the partition to apply")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the deduplicated partition folders go")


def run(args: argparse.Namespace) -> int:
    partition: Partition = args.partition
    source = Path(args.input) / partition.folder
    plan_path = Path(args.input) / PLAN_NAME
    if not plan_path.is_file():
        raise ValueError(f"{plan_path} does not exist; run `python -m data_prep dedup-plan --input {args.input}` "
                         "once every partition is ingested")
    plan = json.loads(plan_path.read_text())
    if plan["partitions"] != partition.count:
        raise ValueError(f"{plan_path} is a plan for {plan['partitions']} partitions, not {partition.count}")
    if plan["manifests"].get(partition.folder) != sha256_file(source / MANIFEST_NAME):
        raise ValueError(f"{source} changed since {plan_path} was made; rerun dedup-plan")
    out = Path(args.out) / partition.folder
    identity = {"partition": str(partition), "input": os.path.abspath(source), "plan_sha256": sha256_file(plan_path)}
    if finished(out, identity):
        print(f"{out} is finished already (partition {partition}); nothing to do")
        return 0
    out.mkdir(parents=True)
    dropped = apply_plan(source, out, plan["dropped"][partition.folder])
    mark_finished(out, identity)
    print(f"{out}: dropped {dropped} duplicate documents")
    return 0


def apply_plan(source: Path, out: Path, drops: dict[str, dict]) -> int:
    """Write ``source`` without the samples ``drops`` names into ``out``; returns how many were dropped."""
    manifest = load_manifest(source)
    shards: list[SampleShardEntry] = []
    kinds: collections.Counter[str] = collections.Counter(manifest.kinds)
    removed_images = 0
    rejects: collections.Counter[str] = collections.Counter(manifest.rejects)
    shutil.copyfile(source / REJECTS_NAME, out / REJECTS_NAME)
    with open(out / REJECTS_NAME, "a", encoding="utf-8") as reject_log:
        for entry in manifest.shards:
            name = shard_name(len(shards))
            records = list(iter_shard(str(source / entry.name))) if _any_dropped(source / entry.name, drops) else None
            if records is None:
                hard_link(source / entry.name, out / name)
                shards.append(dataclasses.replace(entry, name=name))
                continue
            kept = [record for record in records if record.key not in drops]
            for record in records:
                if record.key in drops:
                    drop = drops[record.key]
                    kinds[record.meta.kind] -= 1
                    removed_images += len(record.images)
                    rejects[drop["reason"]] += 1
                    reject_log.write(json.dumps({**record.meta.source, **drop}, ensure_ascii=False) + "\n")
            if kept:
                writer = TarShardWriter(out / name)
                for record in kept:
                    writer.add_sample(record.key, sample_members(record.meta, record.images, record.videos))
                writer.close()
                shards.append(SampleShardEntry(name=name, num_samples=len(kept), bytes=writer.size, sha256=writer.sha256))
    count = sum(rejects.values()) - manifest.num_rejected
    if count != len(drops):
        raise ValueError(f"{PLAN_NAME} names {len(drops)} samples of {source} but {count} were found; rerun dedup-plan")
    deduplicated = dataclasses.replace(
        manifest, shards=shards, num_samples=sum(shard.num_samples for shard in shards),
        num_images=manifest.num_images - removed_images, kinds={kind: n for kind, n in kinds.items() if n},
        rejects=dict(sorted(rejects.items())), num_rejected=sum(rejects.values()),
        dedup=dataclasses.replace(manifest.dedup, pending=False),
    )
    write_atomically(out / MANIFEST_NAME, deduplicated.to_json().encode())
    return count


def _any_dropped(shard: Path, drops: dict[str, dict]) -> bool:
    if not drops:
        return False
    return any(sample.key in drops for sample in index_shard(str(shard)))
