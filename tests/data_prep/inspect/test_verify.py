"""verify: intact datasets pass; every kind of damage is found and makes the command fail."""

import dataclasses
import shutil

import numpy as np
import pytest

from data_prep.__main__ import main
from data_prep.inspect.verify import verify_dataset
from data_prep.pack.packed_shard_writer import save_manifest, write_shard
from megatron_vl.data.packed_format import PackedDataset, sample_key, shard_name
from megatron_vl.data.packed_manifest import KindStats, PackedManifest
from tests.data_prep.sample_corpus import build_packed_dataset


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return build_packed_dataset(tmp_path_factory.mktemp("verify"))[1]


@pytest.fixture
def copy(packed, tmp_path):
    return shutil.copytree(packed, tmp_path / "copy")


def test_intact_dataset_passes(packed, capsys):
    assert main(["verify", str(packed), "--deep"]) == 0
    assert "OK" in capsys.readouterr().out


def test_changed_byte_in_a_shard_fails(copy, capsys):
    with open(copy / "packed-000002.tar", "r+b") as file:
        file.seek(1000)
        file.write(b"\x00\x01")
    assert main(["verify", str(copy)]) == 1
    assert "packed-000002.tar: sha256 differs" in capsys.readouterr().out


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "packed-000001.tar").unlink(), "packed-000001.tar: missing"),
    (lambda d: (d / "packed-000000.index.npy").write_bytes(b"x"), "packed-000000.index.npy: sha256 differs"),
    (lambda d: (d / "packed-000000.tar").open("ab").write(b"\0" * 512), "bytes, manifest says"),
    (lambda d: shutil.copy(d / "packed-000000.tar", d / "packed-000099.tar"), "packed-000099.tar: shard not listed"),
    (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
])
def test_damage_is_found(copy, damage, message):
    damage(copy)
    problems = verify_dataset(copy, progress=False)
    assert any(message in problem for problem in problems), problems


def rewrite_sample(directory, change):
    """Apply ``change`` to the first sample with padding of shard 0 and update the checksums: only
    --deep can tell."""
    dataset = PackedDataset(directory)
    samples = [dataset.read(0, i) for i in range(dataset.shard_sizes[0])]
    change(next(sample for sample in samples if sample.num_padding))
    entry = write_shard(directory / shard_name(0), [(sample_key(0, i), s) for i, s in enumerate(samples)])
    manifest = dataset.manifest
    save_manifest(dataclasses.replace(manifest, shards=[entry, *manifest.shards[1:]]), directory)


def shift_labels(sample):
    sample.labels[:5] = sample.labels[1:6]


def loss_on_image(sample):
    sample.loss_mask[np.isin(sample.labels, [3, 4, 5])] = 1


def move_positions(sample):
    sample.position_ids[1, 3] += 1


def pad_with_text(sample):
    sample.tokens[-1] = 9


@pytest.mark.parametrize("change, message", [
    (shift_labels, "labels are not the next tokens"),
    (loss_on_image, "loss mask covers image or video tokens"),
    (move_positions, "position ids are not"),
    (pad_with_text, "padding holds"),
])
def test_deep_check_finds_content_errors(copy, change, message):
    rewrite_sample(copy, change)
    assert verify_dataset(copy, progress=False) == []
    problems = verify_dataset(copy, deep=True, progress=False)
    assert any(message in problem for problem in problems), problems


def test_deep_check_compares_counts_with_the_manifest(copy):
    manifest = PackedManifest.load(copy)
    kind = next(iter(manifest.tokens_per_kind))
    manifest.tokens_per_kind[kind] = manifest.tokens_per_kind[kind] + KindStats(loss_tokens=1)
    save_manifest(manifest, copy)
    problems = verify_dataset(copy, deep=True, progress=False)
    assert any("tokens_per_kind" in problem for problem in problems), problems


def test_a_url_is_refused_with_the_way_to_verify_it(capsys):
    assert main(["verify", "s3://bucket/packed"]) != 0
    error = capsys.readouterr().err
    assert "verify reads a local folder, not the URL s3://bucket/packed" in error and "aws s3 sync" in error
