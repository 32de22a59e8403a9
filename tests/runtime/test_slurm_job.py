"""Ranks per node follow what the SLURM job asked for, never the node's GPUs when it asked for fewer."""

import subprocess
import sys

import pytest

from megatron_vl.runtime.slurm_job import ranks_per_node

WHOLE_NODE = {"SLURM_GPUS_ON_NODE": "8", "SLURM_NTASKS_PER_NODE": "1"}
"""What --exclusive and the stage scripts' --ntasks-per-node=1 leave in the environment of an 8-GPU node."""


@pytest.mark.parametrize("asked, ranks", [
    ({"SLURM_GPUS_PER_NODE": "2"}, 2),
    ({"SLURM_GPUS_PER_NODE": "a100:4"}, 4),
    ({"SLURM_GPUS_PER_NODE": "gpu:h100:2"}, 2),
    ({"SLURM_TRES_PER_NODE": "cpu:4,gres/gpu:3"}, 3),
    ({"SLURM_NTASKS_PER_NODE": "4", "SLURM_GPUS_PER_NODE": "8"}, 4),
    ({"MVL_GPUS_PER_NODE": "1", "SLURM_GPUS_PER_NODE": "8"}, 1),
    ({}, 8),
])
def test_the_job_request_wins_over_the_node_total(asked, ranks):
    assert ranks_per_node({**WHOLE_NODE, **asked}) == ranks


@pytest.mark.parametrize("environ, message", [
    ({}, "asked for no GPUs"),
    ({"MVL_GPUS_PER_NODE": "two"}, "MVL_GPUS_PER_NODE='two' must be a positive number"),
    ({"SLURM_GPUS_PER_NODE": "gpu:"}, "names no GPU count"),
])
def test_what_cannot_be_read_is_an_error_naming_the_fix(environ, message):
    with pytest.raises(ValueError, match=message):
        ranks_per_node(environ)


def test_command_line():
    command = [sys.executable, "-m", "megatron_vl.runtime.slurm_job", "ranks-per-node"]
    env = {"PATH": "/usr/bin:/bin", "SLURM_GPUS_ON_NODE": "8", "SLURM_GPUS_PER_NODE": "2"}
    assert subprocess.run(command, env=env, capture_output=True, text=True).stdout.strip() == "2"
    failed = subprocess.run(command, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert failed.returncode == 2 and "set MVL_GPUS_PER_NODE" in failed.stderr
