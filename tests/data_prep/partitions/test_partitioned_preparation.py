"""Partitioned ingest -> dedup-plan -> dedup-apply -> pack -> merge gives what one process gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_prep import merge
from data_prep.dedup import apply as dedup_apply
from data_prep.dedup import plan as dedup_plan
from data_prep.ingest import command as ingest
from data_prep.inspect.verify import verify_dataset
from data_prep.pack import command as pack
from data_prep.partitions import MARKER_NAME, Partition
from data_prep.sample_shards.manifest import load_manifest
from megatron_vl.data.compatibility import open_compatible_dataset
from megatron_vl.data.packed_manifest import PackedManifest
from tests.data_prep.cli import run_subcommand

N = 3
SEQ_LEN = 512


def one_process(corpus, out: Path, ingest_args=()) -> Path:
    raw, tokenizer = corpus
    run_subcommand(ingest, "--input", raw, "--out", out / "samples", "--workers", 1, *ingest_args)
    run_subcommand(pack, "--input", out / "samples", "--tokenizer", tokenizer, "--out", out / "packed",
                   "--seq-len", SEQ_LEN, "--shard-size", 4, "--workers", 1)
    return out


def partitioned(corpus, out: Path, steps=("ingest", "plan", "apply", "pack", "merge"), *, n=N, ingest_args=()) -> Path:
    raw, tokenizer = corpus
    for index in range(n):
        if "ingest" in steps:
            run_subcommand(ingest, "--input", raw, "--out", out / "samples", "--workers", 1, "--partition", f"{index}/{n}",
                           *ingest_args)
    if "plan" in steps:
        run_subcommand(dedup_plan, "--input", out / "samples")
    for index in range(n):
        if "apply" in steps:
            run_subcommand(dedup_apply, "--input", out / "samples", "--partition", f"{index}/{n}", "--out", out / "deduped")
        if "pack" in steps:
            run_subcommand(pack, "--input", out / "deduped", "--tokenizer", tokenizer, "--out", out / "packed",
                           "--seq-len", SEQ_LEN, "--shard-size", 4, "--workers", 1, "--partition", f"{index}/{n}")
    if "merge" in steps:
        run_subcommand(merge, "--input", out / "packed", "--out", out / "merged")
        run_subcommand(merge, "--input", out / "deduped", "--out", out / "merged_samples")
    return out


def documents(directory: Path, tokenizer: Path) -> list[tuple]:
    """(origin, part, tokens, loss mask) of every packed document, sorted: what training sees of each."""
    manifest = PackedManifest.load(directory)
    dataset = open_compatible_dataset(directory, seq_len=SEQ_LEN, tokenizer_fingerprint=manifest.tokenizer_fingerprint,
                                      image_settings=manifest.image_settings, tokens_per_second=2)
    found = []
    for index in range(len(dataset)):
        sample = dataset[index]
        cu = sample.cu_seqlens.tolist()
        for document, start, end in zip(sample.documents, cu[:-1], cu[1:]):
            found.append((json.dumps(document.origin, sort_keys=True), document.kind, document.part,
                          tuple(sample.tokens[start:end].tolist()), tuple(sample.loss_mask[start:end].tolist())))
    return sorted(found)


def files(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def test_partition_selection_is_disjoint_complete_and_order_free():
    inputs = [f"shard-{i:03d}.tar" for i in range(10)]
    shares = [Partition.parse(f"{i}/3").select(inputs[::-1]) for i in range(3)]
    assert sorted(sum(shares, [])) == inputs
    assert shares[1] == ["shard-001.tar", "shard-004.tar", "shard-007.tar"]
    for text in ("3/3", "-1/3", "0/0", "1-3"):
        with pytest.raises(ValueError, match="partition"):
            Partition.parse(text)


def test_partitions_merge_into_what_one_process_makes(corpus, tmp_path):
    whole = one_process(corpus, tmp_path / "whole")
    parts = partitioned(corpus, tmp_path / "parts")
    tokenizer = corpus[1]

    assert documents(parts / "merged", tokenizer) == documents(whole / "packed", tokenizer)
    merged, single = PackedManifest.load(parts / "merged"), PackedManifest.load(whole / "packed")
    assert merged.tokens_per_kind == single.tokens_per_kind
    assert merged.num_documents == single.num_documents
    assert verify_dataset(parts / "merged", deep=True, progress=False) == []

    merged_samples, single_samples = load_manifest(parts / "merged_samples"), load_manifest(whole / "samples")
    assert merged_samples.kinds == single_samples.kinds
    assert merged_samples.rejects == single_samples.rejects
    assert merged_samples.rejects == {"duplicate_image": 6}
    assert merged_samples.num_images == single_samples.num_images
    assert len((parts / "merged_samples" / "rejects.jsonl").read_text().splitlines()) == merged_samples.num_rejected
    # no shard bytes are copied: the merged shards are the partitions' files
    assert (parts / "merged" / "packed-000000.tar").stat().st_nlink == 2


def test_partitioned_preparation_is_byte_reproducible_and_resumable(corpus, tmp_path):
    out = tmp_path / "parts"
    first = files(partitioned(corpus, out))
    shutil.rmtree(out)
    partitioned(corpus, out, steps=("ingest", "plan"))
    # a killed job: partition 1's folder half-written (no marker), partition 2 finished
    (out / "samples" / "partition-00001-of-00003" / MARKER_NAME).unlink()
    (out / "samples" / "partition-00001-of-00003" / "ingest_manifest.json").unlink()
    finished_marker = out / "samples" / "partition-00002-of-00003" / MARKER_NAME
    mtime = finished_marker.stat().st_mtime_ns
    partitioned(corpus, out, steps=("ingest",))
    assert finished_marker.stat().st_mtime_ns == mtime, "a finished partition was redone"
    partitioned(corpus, out, steps=("plan", "apply", "pack", "merge"))
    assert files(out) == first


def test_merge_refuses_a_missing_or_unfinished_partition(corpus, tmp_path):
    out = partitioned(corpus, tmp_path / "parts", steps=("ingest", "plan", "apply", "pack"))
    shutil.rmtree(out / "packed" / "partition-00001-of-00003")
    with pytest.raises(ValueError, match="lacks partition-00001-of-00003"):
        run_subcommand(merge, "--input", out / "packed", "--out", out / "merged")
    (out / "packed" / "partition-00002-of-00003" / MARKER_NAME).unlink()
    (out / "packed" / "partition-00001-of-00003").mkdir()
    with pytest.raises(ValueError, match="partition-00001-of-00003, partition-00002-of-00003 of .* are unfinished"):
        run_subcommand(merge, "--input", out / "packed", "--out", out / "merged")
    with pytest.raises(ValueError, match="not dropped yet"):
        run_subcommand(pack, "--input", out / "samples", "--tokenizer", corpus[1], "--out", out / "p2",
                       "--partition", f"0/{N}", "--workers", 1)
