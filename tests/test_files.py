import hashlib
from unittest import mock

import pytest

from megatron_vl import files


def test_write_atomically_replaces_the_whole_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old contents, longer than the new ones")
    files.write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_write_cut_off_before_the_rename_leaves_the_old_file(tmp_path):
    path = tmp_path / "latest_checkpointed_iteration.txt"
    path.write_bytes(b"100\n")
    with mock.patch.object(files.os, "fsync", side_effect=OSError("disk full")), pytest.raises(OSError):
        files.write_atomically(path, b"200\n")
    assert path.read_bytes() == b"100\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_streamed_file_that_raises_is_not_published(tmp_path):
    path = tmp_path / "samples-000000.tar"
    with pytest.raises(RuntimeError), files.atomic_file(path) as file:
        file.write(b"half a shard")
        raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_published_whole_and_durably(tmp_path):
    final = tmp_path / "iter_0000010"
    partial = files.partial_directory(final)
    assert partial.name == "iter_0000010.partial"
    (partial / "sub").mkdir(parents=True)
    (partial / "sub" / "a.distcp").write_bytes(b"tensor")
    (partial / "metadata.json").write_text("{}")
    synced = []
    real_fsync = files.os.fsync
    with mock.patch.object(files.os, "fsync", side_effect=lambda fd: synced.append(fd) or real_fsync(fd)):
        files.publish_directory(partial, final)
    assert not partial.exists() and (final / "sub" / "a.distcp").read_bytes() == b"tensor"
    # two files, the two folders inside, and the parent after the rename
    assert len(synced) == 5


def test_sha256_file_reads_past_one_block(tmp_path):
    payload = bytes(range(256)) * 5000  # 1.28 MB: more than the 1 MiB read block
    path = tmp_path / "shard.tar"
    path.write_bytes(payload)
    assert files.sha256_file(path) == hashlib.sha256(payload).hexdigest()


def test_read_json_object_names_the_path_and_the_fix(tmp_path):
    path = tmp_path / "megatron_vl_run.json"
    with pytest.raises(ValueError, match=f"{path} is missing; not a checkpoint"):
        files.read_json_object(path, if_missing="not a checkpoint", if_corrupt="corrupt")
    path.write_text("{half")
    with pytest.raises(ValueError, match="is not valid JSON .*; the checkpoint is corrupt"):
        files.read_json_object(path, if_missing="", if_corrupt="the checkpoint is corrupt")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="should hold a JSON object, not list; corrupt"):
        files.read_json_object(path, if_missing="", if_corrupt="corrupt")
    path.write_text('{"iteration": 3}')
    assert files.read_json_object(path, if_missing="", if_corrupt="") == {"iteration": 3}
