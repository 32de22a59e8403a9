"""What a SLURM job asked for, read from its environment: the training ranks to start on each node.

The stage scripts run one torchrun per node (``--ntasks-per-node=1``) with ``--exclusive``, which gives the
job every GPU of its nodes: ``SLURM_GPUS_ON_NODE`` is then the node's total, not what the job asked for.
The ranks per node follow, in this order: ``MVL_GPUS_PER_NODE`` (explicit); ``--ntasks-per-node`` when it is
not the scripts' 1 (one rank per task); ``--gpus-per-node`` (``SLURM_GPUS_PER_NODE``, e.g. ``2`` or
``a100:2``); ``--gres=gpu:N`` (``SLURM_TRES_PER_NODE``); and only then the GPUs on the node.

    python -m megatron_vl.runtime.slurm_job ranks-per-node      (prints the number; exits 2 with the reason)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping

from megatron_vl.command_line import run_command


def _count(text: str, variable: str) -> int:
    """The GPU count of a SLURM GPU request: ``2``, ``gpu:2``, ``a100:2``, ``gres/gpu:a100=2``, ``gres:gpu:2``."""
    match = re.search(r"(\d+)\s*$", text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{variable}={text!r} names no GPU count; set MVL_GPUS_PER_NODE to the ranks per node")
    return int(match.group(1))


def ranks_per_node(environ: Mapping[str, str]) -> int:
    """Training ranks on each node of the job whose environment is ``environ`` (see the module docstring)."""
    explicit = environ.get("MVL_GPUS_PER_NODE", "").strip()
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise ValueError(f"MVL_GPUS_PER_NODE={explicit!r} must be a positive number of ranks per node")
        return int(explicit)
    tasks = environ.get("SLURM_NTASKS_PER_NODE", "").strip()
    if tasks and tasks != "1":
        return _count(tasks.split("(")[0], "SLURM_NTASKS_PER_NODE")
    gpus = environ.get("SLURM_GPUS_PER_NODE", "").strip()
    if gpus:
        return _count(gpus, "SLURM_GPUS_PER_NODE")
    tres = environ.get("SLURM_TRES_PER_NODE", "").strip()
    gpu_tres = [item for item in tres.split(",") if "gpu" in item]
    if gpu_tres:
        return _count(gpu_tres[0], "SLURM_TRES_PER_NODE")
    on_node = environ.get("SLURM_GPUS_ON_NODE", "").strip()
    if on_node:
        return _count(on_node, "SLURM_GPUS_ON_NODE")
    raise ValueError(
        "the job asked for no GPUs (--gpus-per-node, --gres=gpu:N) and no --ntasks-per-node; "
        "set MVL_GPUS_PER_NODE to the ranks per node"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m megatron_vl.runtime.slurm_job", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("query", choices=["ranks-per-node"], help="what to print")
    return parser


def run(args: argparse.Namespace) -> int:
    print(ranks_per_node(os.environ))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
