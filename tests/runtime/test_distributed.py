import os
import subprocess
import sys

import pytest

from megatron_vl.runtime.distributed import expand_slurm_nodelist, read_launch_env


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node7", ["node7"]),
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("gpu[08-10],login1", ["gpu08", "gpu09", "gpu10", "login1"]),
        ("a[1-2],b[9]", ["a1", "a2", "b9"]),
    ],
)
def test_expand_slurm_nodelist(nodelist, hosts):
    assert expand_slurm_nodelist(nodelist) == hosts


def test_torchrun_variables_win_over_slurm_ones():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234",
           "SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]"}
    launch = read_launch_env(env)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.launcher) == (3, 8, 1, "torchrun")
    assert (launch.master_addr, launch.master_port) == ("n1", 1234)


def test_slurm_variables_give_rank_and_the_first_node_as_master():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[04-11]",
           "SLURM_JOB_ID": "123456"}
    launch = read_launch_env(env)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.launcher) == (5, 16, 1, "slurm")
    assert launch.master_addr == "gpu04"
    assert launch.master_port == 20000 + 123456 % 20000


def test_single_process_without_launcher():
    launch = read_launch_env({})
    assert (launch.rank, launch.world_size, launch.launcher) == (0, 1, "single")


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        read_launch_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="cannot find rank 0's host"):
        read_launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})


SINGLE_PROCESS = """
import torch.distributed as dist
from megatron_vl.runtime.distributed import init_single_process
from megatron_vl.runtime.platform import detect_platform
launch = init_single_process(detect_platform())
assert (dist.get_rank(), dist.get_world_size(), launch.launcher) == (0, 1, "single"), launch
dist.destroy_process_group()
print("ok")
"""


def test_init_single_process_makes_a_one_rank_world_without_launcher_variables():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "SLURM_PROCID")}
    result = subprocess.run([sys.executable, "-c", SINGLE_PROCESS], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
