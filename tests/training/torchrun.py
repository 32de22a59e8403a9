"""Start the training entry point as ``torchrun --standalone`` would on a node, and read what it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from megatron_vl.training import checkpoint_files
from megatron_vl.training.metrics_file import read_metrics
from tests.training.training_data import SEQ_LEN

TINY_TEST_OVERRIDES = (
    f"seq_len={SEQ_LEN}", "num_workers=0", "logging.log_every=1", "eval.samples=4",
)
"""The tiny recipes on the test data root: 128-token sequences, no loader workers, a small eval."""


def start(stage: str, *, nproc: int, data_root: Path, checkpoint_root: Path, overrides=(), extra_args=()):
    """``torchrun --standalone --nproc-per-node N -m megatron_vl.training.train --recipe STAGE --model tiny``,
    output to ``checkpoint_root/<stage>.log``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MVL_DATA_ROOT=str(data_root), MVL_CHECKPOINT_ROOT=str(checkpoint_root),
               PYTHONWARNINGS="ignore")
    env.pop("MVL_LOG_ROOT", None)
    env.pop("MVL_TOKENIZER", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "megatron_vl.training.train", "--recipe", stage, "--model", "tiny", *extra_args]
    for override in (*TINY_TEST_OVERRIDES, *overrides):
        command += ["--set", override]
    checkpoint_root.mkdir(parents=True, exist_ok=True)
    log = open(checkpoint_root / f"{stage}.log", "ab")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and every process under it at once, as a node failure would (torchrun starts
    each worker in a session of its own, so the process group alone does not reach them)."""
    tree = psutil.Process(process.pid)
    for member in [tree, *tree.children(recursive=True)]:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait()


def workers(process: subprocess.Popen) -> dict[int, psutil.Process]:
    """The training processes under torchrun, by rank."""
    return {int(child.environ()["RANK"]): child for child in psutil.Process(process.pid).children()}


def finish(process: subprocess.Popen, timeout: float = 240) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all(process)
        raise


def run(stage: str, **kwargs) -> None:
    """Run a stage to its end; fail with the tail of its log if it does not exit 0."""
    process = start(stage, **kwargs)
    code = finish(process)
    log = kwargs["checkpoint_root"] / f"{stage}.log"
    assert code == 0, f"{stage} exited {code}:\n" + log.read_text()[-6000:]


def wait_for(condition, process: subprocess.Popen, timeout: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run exited ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def latest(checkpoint_root: Path, stage: str) -> int | None:
    return checkpoint_files.read_latest_iteration(checkpoint_root / stage)


def losses(checkpoint_root: Path, stage: str) -> dict[int, tuple[float, float]]:
    """(loss, grad norm) of each iteration in the stage's metrics.jsonl."""
    return {r["iteration"]: (r["loss"], r["grad_norm"]) for r in read_metrics(checkpoint_root / "logs" / stage)}


def eval_losses(checkpoint_root: Path, stage: str) -> dict[int, float]:
    return {r["iteration"]: r["loss"] for r in read_metrics(checkpoint_root / "logs" / stage, "eval")}
