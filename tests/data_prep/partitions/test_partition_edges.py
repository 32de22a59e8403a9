"""Partitioned preparation at its edges: a rerun of the same merge, partitions left with no document, near
duplicates across partitions, inspect on a merged dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import merge
from data_prep.inspect import inspect_packed
from data_prep.inspect.verify import verify_dataset
from data_prep.partitions import EMPTY_NAME
from data_prep.sample_shards.manifest import load_manifest
from megatron_vl.data.packed_manifest import PackedManifest
from tests.data_prep.cli import run_subcommand
from tests.data_prep.partitions.test_partitioned_preparation import documents, one_process, partitioned


def test_rerunning_the_same_merge_does_nothing_and_another_is_refused(corpus, tmp_path, capsys):
    out = partitioned(corpus, tmp_path / "parts")
    manifest = out / "merged" / "manifest.json"
    written = manifest.stat().st_mtime_ns
    assert run_subcommand(merge, "--input", out / "packed", "--out", out / "merged") == 0
    assert "already holds this merge of 3 partitions; nothing to do" in capsys.readouterr().out
    assert manifest.stat().st_mtime_ns == written
    with pytest.raises(ValueError, match="holds another dataset than this merge"):
        run_subcommand(merge, "--input", out / "deduped", "--out", out / "merged")
    # the same data in 2 partitions: other sequences, shards and checksums
    other = partitioned(corpus, tmp_path / "other", steps=("ingest", "plan", "apply", "pack"), n=2)
    with pytest.raises(ValueError, match="holds another dataset than this merge"):
        run_subcommand(merge, "--input", other / "packed", "--out", out / "merged")
    assert manifest.stat().st_mtime_ns == written


@pytest.fixture
def duplicated(corpus, tmp_path) -> tuple[Path, Path]:
    """a.jsonl and b.jsonl, the same captions: split into 3 partitions, b's (partition 1) are all duplicates of
    a's and partition 2 has no input at all."""
    raw, tokenizer = corpus
    copy = tmp_path / "raw"
    copy.mkdir()
    shutil.copytree(raw / "images", copy / "images")
    shutil.copy(raw / "caption.jsonl", copy / "a.jsonl")
    shutil.copy(raw / "caption.jsonl", copy / "b.jsonl")
    return copy, tokenizer


def test_partitions_with_no_document_left_are_merged_as_empty(duplicated, tmp_path, capsys):
    whole = one_process(duplicated, tmp_path / "whole")
    parts = partitioned(duplicated, tmp_path / "parts")
    printed = capsys.readouterr().out
    assert "recorded as an empty partition" in printed
    assert "merged 1 partitions, skipping 2 empty partitions into one packed dataset" in printed
    assert sorted(path.parent.name for path in (parts / "packed").glob(f"*/{EMPTY_NAME}")) == [
        "partition-00001-of-00003", "partition-00002-of-00003"]
    assert documents(parts / "merged", duplicated[1]) == documents(whole / "packed", duplicated[1])
    assert verify_dataset(parts / "merged", deep=True, progress=False) == []
    merged_samples, single_samples = load_manifest(parts / "merged_samples"), load_manifest(whole / "samples")
    assert merged_samples.rejects == single_samples.rejects == {"duplicate_image": single_samples.num_samples}


@pytest.fixture
def near_duplicates(corpus, tmp_path) -> tuple[Path, Path]:
    """The shared corpus plus zz_near.jsonl (partition 2 of 3 with the others sorted): captions of partition 0's
    images with every pixel brightened by 3, near duplicates but not exact ones."""
    raw, tokenizer = corpus
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    near = []
    for line in (raw / "caption.jsonl").read_text().splitlines()[:3]:
        document = json.loads(line)
        pixels = np.asarray(Image.open(raw / document["image"]).convert("RGB"), dtype=np.int16)
        name = document["image"].replace(".png", "_near.png")
        Image.fromarray(np.clip(pixels + 3, 0, 255).astype(np.uint8)).save(copy / name)
        near.append(json.dumps({**document, "image": name}))
    (copy / "zz_near.jsonl").write_text("\n".join(near) + "\n")
    return copy, tokenizer


def test_near_duplicates_across_partitions_are_dropped_as_one_process_drops_them(near_duplicates, tmp_path):
    whole = one_process(near_duplicates, tmp_path / "whole", ingest_args=("--near-dup",))
    parts = partitioned(near_duplicates, tmp_path / "parts", ingest_args=("--near-dup",))
    merged_samples, single_samples = load_manifest(parts / "merged_samples"), load_manifest(whole / "samples")
    assert single_samples.rejects.get("near_duplicate_image") == 3
    assert merged_samples.rejects == single_samples.rejects
    assert merged_samples.kinds == single_samples.kinds
    assert documents(parts / "merged", near_duplicates[1]) == documents(whole / "packed", near_duplicates[1])


def test_inspect_reads_a_merged_dataset(corpus, tmp_path, capsys):
    parts = partitioned(corpus, tmp_path / "parts")
    manifest = PackedManifest.load(parts / "merged")
    capsys.readouterr()
    assert run_subcommand(inspect_packed, parts / "merged") == 0
    statistics = capsys.readouterr().out
    for kind in manifest.tokens_per_kind:
        assert kind in statistics
    last = manifest.num_samples - 1
    assert run_subcommand(inspect_packed, parts / "merged", "--sample", last, "--tokenizer", corpus[1]) == 0
    assert f"sample {last}" in capsys.readouterr().out
