import pytest

from megatron_vl.training import checkpoint_files


def _complete(root, iteration):
    directory = checkpoint_files.iteration_dir(root, iteration)
    directory.mkdir(parents=True)
    checkpoint_files.write_run_record(directory, {"iteration": iteration})
    return directory


def test_latest_marker_names_the_checkpoint(tmp_path):
    assert checkpoint_files.read_latest_iteration(tmp_path) is None
    _complete(tmp_path, 100)
    _complete(tmp_path, 200)
    checkpoint_files.partial_dir(tmp_path, 300).mkdir()
    checkpoint_files.write_latest_iteration(tmp_path, 200)
    assert checkpoint_files.complete_iterations(tmp_path) == [100, 200]
    directory, iteration = checkpoint_files.resolve_checkpoint(tmp_path)
    assert (directory, iteration) == (checkpoint_files.iteration_dir(tmp_path, 200), 200)
    assert checkpoint_files.read_run_record(directory) == {"iteration": 200}
    assert checkpoint_files.resolve_checkpoint(tmp_path, 100)[1] == 100


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="has no latest_checkpointed_iteration.txt"):
        checkpoint_files.resolve_checkpoint(tmp_path)
    _complete(tmp_path, 100)
    with pytest.raises(ValueError, match=r"no complete checkpoint for iteration 300; available: \[100\]"):
        checkpoint_files.resolve_checkpoint(tmp_path, 300)
    (tmp_path / checkpoint_files.LATEST_FILE).write_text("garbage")
    with pytest.raises(ValueError, match="should hold an iteration number"):
        checkpoint_files.read_latest_iteration(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint_files.resolve_checkpoint(tmp_path / "nope")


def test_run_record_holds_what_readers_rebuild_the_model_from(tmp_path):
    from megatron_vl.config.model import VLModelConfig, tiny
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.config.serialization import config_from_dict
    from megatron_vl.data.images import ImageSettings

    config = tiny(image_token_id=7, video_token_id=8)
    record = checkpoint_files.run_record(
        model=config, parallel=ParallelConfig(tensor_parallel=2), iteration=40, image_settings=ImageSettings(),
        tokenizer_fingerprint="abc", written_by="training", stage="stage3_multimodal",
    )
    checkpoint_files.write_run_record(tmp_path, record)
    saved = checkpoint_files.read_run_record(tmp_path)
    assert saved["format_version"] == checkpoint_files.RUN_RECORD_FORMAT and saved["written_by"] == "training"
    assert config_from_dict(VLModelConfig, saved["model"]) == config
    assert saved["parallel"]["tensor_parallel"] == 2 and saved["iteration"] == 40
    assert saved["image_settings"] == ImageSettings().to_dict() and saved["tokenizer_fingerprint"] == "abc"
    assert saved["stage"] == "stage3_multimodal"


def test_a_version_1_record_reads_with_the_pipeline_split_under_parallel(tmp_path):
    import json

    old = {
        "format_version": 1, "iteration": 4, "written_by": "training",
        "model": {"dtype": "float32", "first_pipeline_stage_language_layers": 1, "image_token_id": 7},
        "parallel": {"tensor_parallel": 1, "pipeline_parallel": 2, "context_parallel": 1, "sequence_parallel": False},
    }
    (tmp_path / checkpoint_files.RUN_FILE).write_text(json.dumps(old))
    record = checkpoint_files.read_run_record(tmp_path)
    assert record["format_version"] == 2 and "first_pipeline_stage_language_layers" not in record["model"]
    assert record["parallel"]["first_pipeline_stage_language_layers"] == 1 and record["iteration"] == 4


def test_resuming_from_a_record_saved_before_videos_sees_the_same_model(tmp_path):
    import types

    from megatron_vl.config.model import tiny
    from megatron_vl.config.serialization import config_to_dict
    from megatron_vl.training.checkpointing import Checkpointer

    config = tiny(image_token_id=7, video_token_id=8)
    old_record = {"model": {k: v for k, v in config_to_dict(config).items() if k != "video_token_id"}}

    def checkpointer(video_pad_id):
        tokenizer = types.SimpleNamespace(video_pad_id=video_pad_id, fingerprint="f" * 64)
        run = types.SimpleNamespace(model=config, recipe=types.SimpleNamespace(model="tiny"))
        return types.SimpleNamespace(tokenizer=tokenizer, run=run)

    Checkpointer._check_model(checkpointer(8), old_record, tmp_path)
    with pytest.raises(ValueError, match=r"\['video_token_id'\] differ"):
        Checkpointer._check_model(checkpointer(9), old_record, tmp_path)
