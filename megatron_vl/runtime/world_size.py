"""The world size a run will have, known before it starts: for ``train --dry-run``'s plan.

In this order: an explicit number (``--world-size``); ``WORLD_SIZE`` (torchrun, ``launch/local.sh``); a SLURM
job's ``SLURM_JOB_NUM_NODES`` (or ``SLURM_NNODES``) x its ranks per node (``runtime/slurm_job.py``); the
``#SBATCH --nodes`` x ``--gpus-per-node`` of the stage's script ``launch/<stage>.sh`` (the scripts run the
``mimo_vl_7b`` recipes at that size, so it is the default only for that model); else one model replica.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from megatron_vl.runtime.slurm_job import ranks_per_node

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"
LAUNCH_SCRIPT_MODEL = "mimo_vl_7b"
"""The model the sbatch scripts' node counts are sized for (``MVL_MODEL``'s default in ``launch/common.sh``)."""
_SBATCH = re.compile(r"^#SBATCH\s+--(nodes|gpus-per-node)=(\d+)\s*$", re.MULTILINE)


def launch_script_world_size(script: str | Path) -> int:
    """GPUs the sbatch script asks for: its ``#SBATCH --nodes=N`` x ``#SBATCH --gpus-per-node=G``."""
    values = dict(_SBATCH.findall(Path(script).read_text()))
    if set(values) != {"nodes", "gpus-per-node"}:
        raise ValueError(
            f"{script} lacks '#SBATCH --nodes=N' or '#SBATCH --gpus-per-node=G' lines; state both so that the "
            "world size of its runs is known"
        )
    return int(values["nodes"]) * int(values["gpus-per-node"])


def planned_world_size(
    *, given: int | None, environ: Mapping[str, str], stage: str, model: str, model_parallel_size: int
) -> tuple[int, str]:
    """The world size of the run of ``stage`` for ``model``, and where it came from (see the module docstring)."""
    if given is not None:
        return given, "--world-size"
    if environ.get("WORLD_SIZE", "").strip():
        value = environ["WORLD_SIZE"].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"WORLD_SIZE={value!r} must be a positive number of ranks; unset it or use --world-size")
        return int(value), "WORLD_SIZE"
    nodes = environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES")
    if nodes:
        per_node = ranks_per_node(environ)
        return int(nodes) * per_node, f"SLURM job: {nodes} node(s) x {per_node} rank(s)"
    script = LAUNCH_DIR / f"{stage}.sh"
    if model == LAUNCH_SCRIPT_MODEL and script.is_file():
        return launch_script_world_size(script), f"launch/{stage}.sh #SBATCH lines"
    return model_parallel_size, "one model replica (no --world-size, WORLD_SIZE or SLURM job)"
