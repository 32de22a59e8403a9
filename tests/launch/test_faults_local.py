"""Faults injected into ``launch/local.sh`` runs of stage 1, each recovered by running the same command again:
the losses of every step equal an uninterrupted run's, bit for bit; a stop signal costs no step, a kill at
most one checkpoint interval; the launcher exits promptly."""

import shutil

import pytest

from megatron_vl.training import checkpoint_files
from tests.launch.fault_runs import (
    SAVE_EVERY,
    FaultCase,
    check_recovered,
    measure,
    record,
    run_local,
    train_losses,
)

CASES = [
    FaultCase("warning signal to the script before the first checkpoint", "signal=USR1 target=script iteration=1",
              warned=True),
    FaultCase("warning signal to the launcher right after a periodic save",
              f"signal=USR1 target=launcher iteration={SAVE_EVERY} when=after_save", warned=True),
    FaultCase("warning signal during a periodic save (async), to rank 0's process group",
              f"signal=USR1 target=group iteration={SAVE_EVERY} when=after_save", warned=True,
              overrides=("checkpoint.async_save=true",)),
    FaultCase("warning signal during evaluation", "signal=USR1 target=launcher iteration=4 when=before_eval", warned=True,
              stops_at=4),
    FaultCase("warning signal at a data epoch boundary (saved at step 3, the end of epoch 2)",
              "signal=USR1 target=script iteration=2", warned=True, stops_at=3),
    FaultCase("SIGTERM to rank 1 only", "signal=TERM target=rank rank=1 iteration=5", warned=True),
    FaultCase("SIGTERM to every process of the launch (as at a time limit)", "signal=TERM target=node iteration=5",
              warned=True),
    FaultCase("kill -9 of rank 1 mid-step", "signal=KILL target=rank rank=1 iteration=4 delay=0.05", warned=False),
    FaultCase("kill -9 of torchrun mid-step", "signal=KILL target=torchrun iteration=4 delay=0.05", warned=False),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault_then_rerun(case, reference, data_root, tmp_path):
    status = run_local(data_root, tmp_path, fault=case.fault, overrides=case.overrides)
    log = (tmp_path / "run.log").read_text()
    if case.warned:
        assert status == 0, log[-4000:]
        assert "run the same command again to resume" in log
    else:
        assert status != 0, log[-4000:]
        assert "the ranks wrote no outcome" in log
    assert run_local(data_root, tmp_path, overrides=case.overrides) == 0, (tmp_path / "run.log").read_text()[-4000:]
    measures = measure((tmp_path / "run.log").read_text())
    record(case, "local.sh", measures)
    check_recovered(case, measures, tmp_path, reference)


def test_save_initial_keeps_the_starting_point_and_restarts_the_stage_exactly(reference, data_root, tmp_path):
    """``checkpoint.save_initial`` writes iteration 0 before the first step and ``keep_last`` never deletes it;
    a run resumed from it trains the uninterrupted run's steps bit for bit."""
    status = run_local(data_root, tmp_path, overrides=("checkpoint.save_initial=true", "checkpoint.keep_last=1"))
    assert status == 0, (tmp_path / "run.log").read_text()[-4000:]
    stage = tmp_path / "checkpoints" / "stage1_projector"
    assert checkpoint_files.complete_iterations(stage) == [0, 8]
    shutil.rmtree(checkpoint_files.iteration_dir(stage, 8))
    checkpoint_files.write_latest_iteration(stage, 0)
    assert run_local(data_root, tmp_path) == 0, (tmp_path / "run.log").read_text()[-4000:]
    assert f"resumed from {checkpoint_files.iteration_dir(stage, 0)} at iteration 0" in (tmp_path / "run.log").read_text()
    assert train_losses(tmp_path) == train_losses(reference)
