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
