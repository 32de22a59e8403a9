"""Runs of stage 1 (tiny, TP=2 with SP on 2 CPU ranks, 128-token packs) through the launch scripts, with a fault
injected (``MVL_FAULT_INJECTION``, see ``megatron_vl/training/fault_injection.py``), recovered the way a user or
SLURM would, and measured: the steps the fault cost, and the seconds from the fault to the launcher's exit.

Every run appends to one log per case (a SLURM job's attempts append to its output), so the measures come
from what the scripts and ranks print: ``fault injection: SIGNAL to TARGET at T``, ``iter K/N``, ``resumed
from ... at iteration C`` and the scripts' ``(launcher exited at T)``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

from megatron_vl.training.metrics_file import read_metrics
from tests.training.torchrun import TINY_TEST_OVERRIDES

REPO = Path(__file__).resolve().parents[2]
STAGE = "stage1_projector"
ITERATIONS = 8
SAVE_EVERY = 3
EVAL_EVERY = 4
BATCH = 4
"""Four of the 6 caption sequences a step: step 3 ends exactly at the end of the second epoch."""
OVERRIDES = (
    *TINY_TEST_OVERRIDES, "num_workers=1", f"global_batch_size={BATCH}", f"train_tokens={ITERATIONS * BATCH * 128}",
    f"checkpoint.save_every={SAVE_EVERY}", f"eval.every={EVAL_EVERY}", "checkpoint.keep_last=10",
    # Faults need a stage that starts by itself: tiny's stage 1 would start from stage 0's checkpoint.
    "init_from=null",
)
SHUTDOWN_TIMEOUT = 300
"""torchrun's grace for the ranks; a run that hangs until it would show as a slow exit."""

RESULTS: list[dict] = []
"""One row per case run in this session, for the table printed at the end."""


@dataclasses.dataclass(frozen=True)
class FaultCase:
    name: str
    """What happens, as the README's table says it."""
    fault: str
    """``MVL_FAULT_INJECTION`` of the first run."""
    warned: bool
    """A stop signal gave warning: no step may be lost (else at most ``SAVE_EVERY``)."""
    overrides: tuple[str, ...] = ()
    """Recipe overrides on top of ``OVERRIDES`` (training the same steps)."""
    stops_at: int | None = None
    """The step the run must stop and save at, where the case is about that step."""


def environment(data_root: Path, root: Path, fault: str | None) -> dict[str, str]:
    env = dict(
        os.environ, MVL_MODEL="tiny", MVL_DATA_ROOT=str(data_root), MVL_CHECKPOINT_ROOT=str(root / "checkpoints"),
        MVL_PYTHON=sys.executable, MVL_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1",
    )
    for name in ("MVL_LOG_ROOT", "MVL_TOKENIZER", "MVL_RUN_OUTCOME", "MVL_GPUS_PER_NODE", "MVL_FAULT_INJECTION"):
        env.pop(name, None)
    if fault:
        env["MVL_FAULT_INJECTION"] = fault
    return env


def train_args(overrides=()) -> str:
    return " ".join(f"--set {override}" for override in (*OVERRIDES, *overrides))


def run_local(data_root: Path, root: Path, *, fault: str | None = None, overrides=(), timeout: float = 600) -> int:
    """``bash launch/local.sh stage1_projector 2``, output appended to ``root/run.log``; its exit status."""
    env = environment(data_root, root, fault)
    env["MVL_TRAIN_ARGS"] = train_args(overrides)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "run.log", "ab") as log:
        return subprocess.run(["bash", str(REPO / "launch" / "local.sh"), STAGE, "2"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout).returncode


def train_losses(root: Path) -> dict[int, tuple[float, float]]:
    """(loss, grad norm) of each step in the stage's metrics.jsonl."""
    return {r["iteration"]: (r["loss"], r["grad_norm"]) for r in read_metrics(root / "checkpoints" / "logs" / STAGE)}


def eval_losses(root: Path) -> dict[int, float]:
    return {r["iteration"]: r["loss"] for r in read_metrics(root / "checkpoints" / "logs" / STAGE, "eval")}


@dataclasses.dataclass(frozen=True)
class Measures:
    trained: int
    """The last step the interrupted run trained."""
    resumed_from: int
    """The checkpoint the next run resumed from."""
    seconds_to_exit: float | None
    """From the (first) injected fault to the launcher's exit."""

    @property
    def steps_lost(self) -> int:
        return self.trained - self.resumed_from


def measure(log: str) -> Measures:
    """The measures of the first fault in ``log`` and the first resume after it."""
    fault = re.search(r"fault injection: \S+ to \S+ at ([0-9.]+)", log)
    assert fault, "no fault was injected:\n" + log[-4000:]
    before, _, after = log.partition("resumed from ")
    resumed = re.match(r"\S+ at iteration (\d+)", after)
    assert resumed, "the next run did not resume from a checkpoint:\n" + log[-4000:]
    trained = max(int(step) for step in re.findall(r"\biter (\d+)/\d+ \|", before))
    exited = [float(t) for t in re.findall(r"\(launcher exited at ([0-9.]+)\)", before)]
    seconds = exited[-1] - float(fault.group(1)) if exited else None
    return Measures(trained=trained, resumed_from=int(resumed.group(1)), seconds_to_exit=seconds)


def record(case: FaultCase, launcher: str, measures: Measures) -> None:
    RESULTS.append({"case": case.name, "launcher": launcher, "fault": case.fault, "warned": case.warned,
                    "trained": measures.trained, "resumed": measures.resumed_from, "lost": measures.steps_lost,
                    "seconds": measures.seconds_to_exit})


def results_table() -> str:
    lines = ["| case | launcher | steps trained / resumed from | steps lost | seconds to exit |", "|---|---|---|---|---|"]
    for row in RESULTS:
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.1f}"
        lines.append(f"| {row['case']} | {row['launcher']} | {row['trained']} / {row['resumed']} | {row['lost']} | {seconds} |")
    return "\n".join(lines)


def check_recovered(case: FaultCase, measures: Measures, root: Path, reference: Path) -> None:
    """The recovered run trained every step with the uninterrupted run's losses, losing what the case allows."""
    limit = 0 if case.warned else SAVE_EVERY
    assert 0 <= measures.steps_lost <= limit, measures
    if case.stops_at is not None:
        assert measures.resumed_from == case.stops_at, measures
    assert train_losses(root) == train_losses(reference)
    assert eval_losses(root) == eval_losses(reference)
    assert measures.seconds_to_exit is not None and measures.seconds_to_exit < SHUTDOWN_TIMEOUT / 5, measures


def submit(cluster, data_root: Path, root: Path, *, fault: str | None = None, overrides=()) -> int:
    """``sbatch --nodes=1 --gpus-per-node=2 launch/stage1_projector.sh`` (the node has 8 GPUs; the script asks
    for all of them with --exclusive), output appended to ``root/run.log``; the job id."""
    env = environment(data_root, root, fault)
    env["MVL_TRAIN_ARGS"] = train_args(overrides)
    root.mkdir(parents=True, exist_ok=True)
    return cluster.sbatch(
        "--nodes=1", "--gpus-per-node=2", "--time=00:15:00", f"--output={root / 'run.log'}",
        str(REPO / "launch" / f"{STAGE}.sh"), extra_env=env, cwd=str(root),
    )
