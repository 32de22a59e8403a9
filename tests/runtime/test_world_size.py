"""The dry run's world size: --world-size, then WORLD_SIZE, then the SLURM job, then the stage's sbatch script
(for the model the scripts are sized for), then one replica."""

import pytest

from megatron_vl.config.recipe import STAGES
from megatron_vl.runtime.world_size import (
    LAUNCH_DIR,
    launch_script_world_size,
    planned_world_size,
)


def _planned(environ, given=None, model="mimo_vl_7b"):
    return planned_world_size(given=given, environ=environ, stage="stage4_32k", model=model, model_parallel_size=4)


def test_the_sources_in_order():
    slurm = {"SLURM_JOB_NUM_NODES": "3", "SLURM_GPUS_PER_NODE": "h100:4"}
    assert _planned({"WORLD_SIZE": "16", **slurm}, given=8) == (8, "--world-size")
    assert _planned({"WORLD_SIZE": "16", **slurm}) == (16, "WORLD_SIZE")
    assert _planned(slurm) == (12, "SLURM job: 3 node(s) x 4 rank(s)")
    assert _planned({}) == (256, "launch/stage4_32k.sh #SBATCH lines")
    assert _planned({}, model="tiny")[0] == 4


def test_every_stage_script_states_its_size():
    sizes = {stage: launch_script_world_size(LAUNCH_DIR / f"{stage}.sh") for stage in STAGES}
    assert sizes == {"stage1_projector": 64, "stage2_vit": 64, "stage3_multimodal": 256, "stage4_32k": 256}


def test_bad_sources_are_refused(tmp_path):
    script = tmp_path / "stage.sh"
    script.write_text("#!/bin/bash\n#SBATCH --nodes=2\n")
    with pytest.raises(ValueError, match="lacks '#SBATCH --nodes=N' or '#SBATCH --gpus-per-node=G'"):
        launch_script_world_size(script)
    with pytest.raises(ValueError, match="WORLD_SIZE='0' must be a positive number"):
        _planned({"WORLD_SIZE": "0"})
