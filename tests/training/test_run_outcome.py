"""How a run ended, as rank 0 reports it to its launcher, and the exit codes the launch scripts act on."""

import subprocess
import sys

import pytest

from megatron_vl.training.run_outcome import COMPLETE, RESUMABLE, UNCONFIRMED, RunOutcome, read_run_outcome, write_run_outcome


def _outcome(**changes) -> RunOutcome:
    values = dict(stage="stage3_multimodal", ending="stopped", reason="SIGUSR1 received", iteration=6,
                  train_iterations=40, checkpoint="/ckpt/stage3_multimodal/iter_0000006")
    return RunOutcome(**{**values, **changes})


def _report(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "megatron_vl.training.run_outcome", str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("outcome, code, text", [
    (_outcome(), RESUMABLE, "stage3_multimodal stopped (SIGUSR1 received) at iteration 6/40; checkpoint /ckpt/"),
    (_outcome(ending="complete", reason=None, iteration=40), COMPLETE, "complete at iteration 40/40"),
    (_outcome(checkpoint=None), UNCONFIRMED, "iteration 6 NOT saved"),
])
def test_the_report_and_its_exit_code(outcome, code, text, tmp_path):
    path = tmp_path / "outcomes" / "job.json"
    write_run_outcome(path, outcome)
    assert read_run_outcome(path) == outcome
    result = _report(path)
    assert result.returncode == code and text in result.stdout


def test_no_outcome_is_unconfirmed(tmp_path):
    result = _report(tmp_path / "missing.json")
    assert result.returncode == UNCONFIRMED and "the ranks wrote no outcome" in result.stdout
