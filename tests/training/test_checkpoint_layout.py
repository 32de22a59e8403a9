import pytest

from megatron_vl.training import checkpoint_layout as layout


def _complete(root, iteration):
    directory = layout.iteration_dir(root, iteration)
    directory.mkdir(parents=True)
    layout.write_run_record(directory, {"iteration": iteration})
    return directory


def test_latest_marker_names_the_checkpoint(tmp_path):
    assert layout.read_latest_iteration(tmp_path) is None
    _complete(tmp_path, 100)
    _complete(tmp_path, 200)
    layout.partial_dir(tmp_path, 300).mkdir()
    layout.write_latest_iteration(tmp_path, 200)
    assert layout.complete_iterations(tmp_path) == [100, 200]
    directory, iteration = layout.resolve_checkpoint(tmp_path)
    assert (directory, iteration) == (layout.iteration_dir(tmp_path, 200), 200)
    assert layout.read_run_record(directory) == {"iteration": 200}
    assert layout.resolve_checkpoint(tmp_path, 100)[1] == 100


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="has no latest_checkpointed_iteration.txt"):
        layout.resolve_checkpoint(tmp_path)
    _complete(tmp_path, 100)
    with pytest.raises(ValueError, match=r"no complete checkpoint for iteration 300; available: \[100\]"):
        layout.resolve_checkpoint(tmp_path, 300)
    (tmp_path / layout.LATEST_FILE).write_text("garbage")
    with pytest.raises(ValueError, match="should hold an iteration number"):
        layout.read_latest_iteration(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        layout.resolve_checkpoint(tmp_path / "nope")
