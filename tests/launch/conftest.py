"""What the launch tests share: the real single-node SLURM cluster, the uninterrupted run the fault-injection
cases compare with, and the table of their results."""

import os

import pytest

from tests.launch.fault_runs import RESULTS, results_table, run_local
from tests.slurm_cluster import SlurmCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    reason = SlurmCluster.unavailable_reason()
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture(scope="session")
def reference(data_root, tmp_path_factory):
    """Stage 1 uninterrupted, through ``launch/local.sh`` (the launcher does not change the numbers)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    assert run_local(data_root, root) == 0, (root / "run.log").read_text()[-4000:]
    return root


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.write_sep("-", "fault injection: steps lost and seconds from the fault to the ranks' exit")
        terminalreporter.write_line(results_table())
