"""Faults injected into ``sbatch launch/stage1_projector.sh`` jobs on a real single-node SLURM cluster, each
recovered the way SLURM or a user would: the job requeuing itself after a warning, a resubmission after a
failed job, ``scontrol requeue`` after a lost node. The losses of every step equal an uninterrupted run's, bit
for bit; a stop signal costs no step, a kill at most one checkpoint interval; the ranks exit promptly.

Every job asks for 2 GPUs per node on a node with 8 (``SlurmCluster``), and the stage script asks for the whole
node (--exclusive): each must start 2 ranks, not 8.
"""

import pytest

from tests.launch.fault_runs import (
    SAVE_EVERY,
    FaultCase,
    check_recovered,
    measure,
    record,
    submit,
)

REQUEUED_BY_ITSELF = [
    FaultCase("warning signal to the batch script before the first checkpoint",
              "signal=USR1 target=job_batch iteration=1", warned=True),
    FaultCase("warning signal to every process of the step during a periodic save",
              f"signal=USR1 target=job_steps iteration={SAVE_EVERY} when=before_save", warned=True),
    FaultCase("warning signal to the batch script twice in a row",
              "signal=USR1 target=job_batch iteration=5 repeat=2 interval=0.3", warned=True),
    FaultCase("SIGTERM to the batch script", "signal=TERM target=job_batch iteration=4", warned=True),
]
KILL_WHOLE_STEP = "signal=KILL target=node iteration=4 delay=0.05"
"""Every process of the launch on the node at once (``scancel --signal=KILL`` would not do: SLURM turns it into
a cancellation, SIGTERM first, which the ranks answer with a save)."""


@pytest.mark.parametrize("case", REQUEUED_BY_ITSELF, ids=[case.name for case in REQUEUED_BY_ITSELF])
def test_warning_then_the_job_requeues_itself(case, cluster, reference, data_root, tmp_path):
    job = submit(cluster, data_root, tmp_path, fault=case.fault)
    state = cluster.wait(job, timeout=600)
    log = (tmp_path / "run.log").read_text()
    assert state == "COMPLETED", log[-4000:]
    assert "1 node(s) x 2 rank(s)" in log
    assert "the stop's checkpoint is saved; requeueing job" in log
    measures = measure(log)
    record(case, "sbatch", measures)
    check_recovered(case, measures, tmp_path, reference)


def test_kill_of_the_whole_step_fails_the_job_and_a_resubmission_resumes(cluster, reference, data_root, tmp_path):
    case = FaultCase("kill -9 of every process of the step mid-step, job resubmitted", KILL_WHOLE_STEP, warned=False)
    job = submit(cluster, data_root, tmp_path, fault=case.fault)
    assert cluster.wait(job, timeout=600) == "FAILED", (tmp_path / "run.log").read_text()[-4000:]
    assert "the ranks wrote no outcome" in (tmp_path / "run.log").read_text()
    again = submit(cluster, data_root, tmp_path)
    assert cluster.wait(again, timeout=600) == "COMPLETED", (tmp_path / "run.log").read_text()[-4000:]
    measures = measure((tmp_path / "run.log").read_text())
    record(case, "sbatch", measures)
    check_recovered(case, measures, tmp_path, reference)


def test_lost_node_then_requeue_resumes(cluster, reference, data_root, tmp_path):
    """The step's processes die at once mid-step, as on a lost node, then SLURM requeues the job (``scontrol
    requeue``, what it does for a --requeue job whose node failed); the requeued job injects no fault."""
    case = FaultCase("node lost mid-step (every process of the step killed at once), job requeued", KILL_WHOLE_STEP,
                     warned=False)
    job = submit(cluster, data_root, tmp_path, fault=case.fault)
    assert cluster.wait(job, timeout=600) == "FAILED", (tmp_path / "run.log").read_text()[-4000:]
    cluster.run("scontrol", "requeue", str(job))
    assert cluster.wait(job, timeout=600) == "COMPLETED", (tmp_path / "run.log").read_text()[-4000:]
    measures = measure((tmp_path / "run.log").read_text())
    record(case, "sbatch", measures)
    check_recovered(case, measures, tmp_path, reference)
