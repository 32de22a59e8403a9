"""``sbatch launch/stage1_projector.sh`` on a real single-node SLURM cluster, with the tiny recipe."""

import os
import sys
import time

import pytest

from megatron_vl.training import checkpoint_files
from megatron_vl.training.metrics_file import read_metrics
from tests.slurm_cluster import SlurmCluster
from tests.training.torchrun import TINY_TEST_OVERRIDES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE = "stage1_projector"
SEQUENCES_PER_STEP = 8
ITERATIONS = 20

pytestmark = pytest.mark.skipif(
    SlurmCluster.unavailable_reason() is not None and not os.environ.get("CI"),
    reason=str(SlurmCluster.unavailable_reason()),
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def _submit(cluster, tmp_path, data_root, *, iterations, save_every):
    overrides = [*TINY_TEST_OVERRIDES, f"train_tokens={iterations * SEQUENCES_PER_STEP * 128}",
                 f"checkpoint.save_every={save_every}", "eval.every=1000"]
    env = {
        "MVL_MODEL": "tiny",
        "MVL_DATA_ROOT": str(data_root),
        "MVL_CHECKPOINT_ROOT": str(tmp_path / "checkpoints"),
        "MVL_PYTHON": sys.executable,
        "MVL_TRAIN_ARGS": " ".join(f"--set {override}" for override in overrides),
        "MVL_SHUTDOWN_TIMEOUT": "120",
        "MVL_GPUS_PER_NODE": "2",  # --exclusive grants all 8 (fake) GPUs of the node; 2 CPU ranks here
        "PYTHONWARNINGS": "ignore",
    }
    job = cluster.sbatch(
        "--nodes=1", "--gpus-per-node=2", "--time=00:15:00", f"--output={tmp_path}/slurm-%j.out",
        os.path.join(REPO, "launch", f"{STAGE}.sh"),
        extra_env=env, cwd=str(tmp_path),
    )
    return job, tmp_path / "checkpoints" / STAGE


def _output(tmp_path, job):
    return (tmp_path / f"slurm-{job}.out").read_text()


def test_sbatch_runs_stage1_to_completion(cluster, tmp_path, data_root):
    job, checkpoints = _submit(cluster, tmp_path, data_root, iterations=4, save_every=2)
    state = cluster.wait(job, timeout=600)
    output = _output(tmp_path, job)
    assert state == "COMPLETED", output[-4000:]
    assert "1 node(s) x 2 rank(s)" in output
    assert checkpoint_files.read_latest_iteration(checkpoints) == 4
    assert checkpoint_files.complete_iterations(checkpoints) == [2, 4]
    losses = read_metrics(tmp_path / "checkpoints" / "logs" / STAGE)
    assert [record["iteration"] for record in losses] == [1, 2, 3, 4]


def test_warning_signal_saves_requeues_and_resumes(cluster, tmp_path, data_root):
    job, checkpoints = _submit(cluster, tmp_path, data_root, iterations=ITERATIONS, save_every=1000)
    log_dir = tmp_path / "checkpoints" / "logs" / STAGE
    _wait_for(lambda: read_metrics(log_dir), "training never logged an iteration", cluster, job, tmp_path)
    # What SLURM sends before the time limit (#SBATCH --signal=B:USR1@600), to the batch shell.
    cluster.run("scancel", "--signal=USR1", "--batch", str(job))
    _wait_for(lambda: "requeueing job" in _output(tmp_path, job) and cluster.job_state(job) == "PENDING",
              "the job did not requeue itself", cluster, job, tmp_path)
    state = cluster.wait(job, timeout=600)
    output = _output(tmp_path, job)
    assert state == "COMPLETED", output[-4000:]
    saved = checkpoint_files.complete_iterations(checkpoints)
    assert len(saved) == 2 and 1 <= saved[0] < ITERATIONS and saved[1] == ITERATIONS, saved
    assert f"resumed from {checkpoint_files.iteration_dir(checkpoints, saved[0])} at iteration {saved[0]}" in output
    iterations = [record["iteration"] for record in read_metrics(log_dir)]
    assert iterations == list(range(1, ITERATIONS + 1))


def _wait_for(condition, message, cluster, job, tmp_path, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        state = cluster.job_state(job)
        assert time.monotonic() < deadline and state not in ("FAILED", "CANCELLED", "TIMEOUT", "COMPLETED"), (
            f"{message} (job state {state}):\n{_output(tmp_path, job)[-4000:]}"
        )
        time.sleep(0.5)
