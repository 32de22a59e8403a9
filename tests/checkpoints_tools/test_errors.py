"""Clear errors, each naming what is wrong and where: a wrong preset, a missing shard, a corrupt file."""

import json
import shutil

import pytest

from checkpoints_tools import from_hf, to_hf
from checkpoints_tools.from_hf import ImportRequest, import_checkpoint
from checkpoints_tools.to_hf import export
from megatron_vl.training import checkpoint_files


def _copy(source, target):
    shutil.copytree(source, target)
    return target


def test_wrong_preset_names_the_tensor_both_shapes_and_the_fix(world, tmp_path, capsys):
    argv = ["--hf", str(world.hf_dir), "--out", str(tmp_path / "out"), "--preset", "mimo_vl_7b"]
    assert from_hf.main(argv) == 2
    message = capsys.readouterr().err
    assert "visual.patch_embed.proj.weight has shape [64, 3, 2, 14, 14]" in message
    assert "expects [1280, 3, 2, 14, 14]" in message and "drop --preset" in message
    assert not (tmp_path / "out").exists()


def test_preset_that_fits_is_accepted(world, tmp_path):
    import_checkpoint(ImportRequest(out=tmp_path / "out", hf=world.hf_dir, preset="tiny"), progress=False)
    assert checkpoint_files.read_latest_iteration(tmp_path / "out") == 0


def test_layout_that_cannot_split_the_model(world, tmp_path):
    with pytest.raises(ValueError, match="num_attention_heads=4 is not divisible by ParallelConfig.tensor_parallel=3"):
        import_checkpoint(ImportRequest(out=tmp_path / "out", hf=world.hf_dir, tensor_parallel=3), progress=False)


def test_missing_truncated_and_unindexed_safetensors(world, tmp_path):
    broken = _copy(world.hf_dir, tmp_path / "hf")
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    data = (broken / shard).read_bytes()
    (broken / shard).write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=f"{shard} is truncated"):
        import_checkpoint(ImportRequest(out=tmp_path / "out", hf=broken), progress=False)
    (broken / shard).unlink()
    with pytest.raises(ValueError, match=f"names shard\\(s\\) that are missing: \\['{shard}'\\]"):
        import_checkpoint(ImportRequest(out=tmp_path / "out", hf=broken), progress=False)
    (broken / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.safetensors.index.json is not a valid safetensors index"):
        import_checkpoint(ImportRequest(out=tmp_path / "out", hf=broken), progress=False)


def test_missing_and_corrupt_dist_checkpoint_files(world, tmp_path, capsys):
    root = _copy(world.megatron_roots[(2, 2)], tmp_path / "ckpt")
    iteration = checkpoint_files.iteration_dir(root, 1)
    data_file = iteration / "__1_0.distcp"
    original = data_file.read_bytes()
    data_file.write_bytes(b"\0" * len(original))
    with pytest.raises(ValueError, match=r"failed .*the file\(s\) \[.*'__1_0.distcp'.*\] are corrupt"):
        export(root, tmp_path / "hf1", progress=False)
    data_file.unlink()
    assert to_hf.main(["--ckpt", str(root), "--out", str(tmp_path / "hf2")]) == 2
    assert "__1_0.distcp is missing" in capsys.readouterr().err
    data_file.write_bytes(original)
    (iteration / ".metadata").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"\.metadata is corrupt"):
        export(root, tmp_path / "hf3", progress=False)
    assert not (tmp_path / "hf3").exists() and not (tmp_path / "hf3.partial").exists()


def test_export_refuses_a_non_empty_output(world, tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty"):
        export(world.imported, tmp_path / "hf", progress=False)


def test_config_json_placeholder_ids_must_be_the_tokenizers(world, tmp_path):
    broken = _copy(world.hf_dir, tmp_path / "hf")
    config = json.loads((broken / "config.json").read_text())
    config["video_token_id"] = 7
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"says video_token_id 7 but the tokenizer's <\|video_pad\|> is 6"):
        import_checkpoint(ImportRequest(out=tmp_path / "out", hf=broken), progress=False)


def test_a_run_record_saved_before_videos_opens_with_the_tokenizers_video_pad(world, tmp_path):
    from checkpoints_tools.run_checkpoint import open_run_checkpoint
    from tests.models.vl_batches import VIDEO

    root = _copy(world.imported, tmp_path / "ckpt")
    recorded = open_run_checkpoint(root).config
    assert recorded.video_token_id == VIDEO
    directory, _ = checkpoint_files.resolve_checkpoint(root, None)
    record_file = directory / checkpoint_files.RUN_FILE
    record = json.loads(record_file.read_text())
    del record["model"]["video_token_id"]
    record_file.write_text(json.dumps(record))
    assert open_run_checkpoint(root).config == recorded
