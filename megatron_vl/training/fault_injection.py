"""Deterministic fault injection, for the fault-tolerance tests and for trying a cluster's preemption path:
one rank sends a signal at a chosen point of the run.

``MVL_FAULT_INJECTION`` holds ``key=value`` pairs separated by spaces or commas::

    MVL_FAULT_INJECTION="signal=SIGUSR1 target=job_batch iteration=4 when=after_save"

* ``signal``: ``SIGUSR1``, ``SIGTERM``, ``SIGKILL``, ... (or ``USR1``, ...);
* ``target``: who gets it: ``rank`` (the injecting process), ``group`` (its process group: the rank and its
  children), ``torchrun`` (its parent), ``launcher`` (torchrun's parent, ``megatron_vl.runtime.launcher``),
  ``script`` (the launcher's parent: ``launch/local.sh``), ``node`` (the launcher and every process under it,
  all at once, as a crashed node loses them), ``job_batch`` (the SLURM batch script, as
  ``#SBATCH --signal=B:...`` sends it before the time limit), ``job_steps`` (every process of the job's
  steps, through ``scancel --signal``; SLURM treats SIGTERM and SIGKILL there as cancelling the step);
* ``iteration``: the step at which it happens;
* ``when``: ``before_eval`` (after the step's metrics, before its evaluation: the signal is pending during
  it), ``before_save`` (after the stop check, before the step's checkpoint save: pending while every process
  writes it), ``after_save`` (after the save is written, or while an async save is being written);
* ``delay``: seconds after that point (from a timer thread: with a delay the signal lands inside the next step);
* ``repeat``: how many times, ``interval`` seconds apart (a second warning during the save);
* ``rank``: the global rank that injects (default 0).

A requeued SLURM job (``SLURM_RESTART_COUNT`` > 0) injects nothing: the requeue resumes without the fault.

Each signal sent is logged with its time (``fault injection: ... at EPOCH``) so tests can time the exit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import subprocess
import threading
import time

import psutil
import torch.distributed as dist

from megatron_vl.config.validation import non_negative_number, one_of, positive_int, positive_number
from megatron_vl.training.trainer import Hook, StepResult, Trainer

logger = logging.getLogger(__name__)

FAULT_INJECTION_ENVIRONMENT = "MVL_FAULT_INJECTION"
TARGETS = ("rank", "group", "torchrun", "launcher", "script", "node", "job_batch", "job_steps")
WHEN_PRIORITY = {"before_eval": 150, "before_save": 450, "after_save": 550}
"""Between the hooks of a step: metrics 100, eval 200, profiling 300, stop on signal 400, checkpoints 500."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultInjection:
    """One injected fault (see the module docstring)."""

    signal: str
    """The signal's name, ``SIGUSR1`` style."""
    target: str
    """Who gets it: one of ``TARGETS``."""
    iteration: int
    """The step at which it happens."""
    when: str = "after_save"
    """Where in the step: one of ``WHEN_PRIORITY``."""
    delay: float = 0.0
    """Seconds after that point."""
    repeat: int = 1
    """How many times it is sent."""
    interval: float = 0.2
    """Seconds between repeats."""
    rank: int = 0
    """The global rank that injects it."""

    def __post_init__(self) -> None:
        name = self.signal if self.signal.startswith("SIG") else f"SIG{self.signal}"
        if name not in signal.Signals.__members__:
            raise ValueError(f"{FAULT_INJECTION_ENVIRONMENT}: unknown signal {self.signal!r}; e.g. SIGUSR1, SIGTERM, SIGKILL")
        object.__setattr__(self, "signal", name)
        owner = FAULT_INJECTION_ENVIRONMENT
        one_of(owner, "target", self.target, TARGETS)
        one_of(owner, "when", self.when, WHEN_PRIORITY)
        positive_int(owner, "iteration", self.iteration)
        positive_int(owner, "repeat", self.repeat)
        non_negative_number(owner, "delay", self.delay)
        positive_number(owner, "interval", self.interval)
        if self.rank < 0:
            raise ValueError(f"{owner}: rank must be a global rank >= 0, got {self.rank}")

    @classmethod
    def parse(cls, text: str) -> "FaultInjection":
        fields = {field.name: field.type for field in dataclasses.fields(cls)}
        values = {}
        for pair in filter(None, re.split(r"[\s,]+", text.strip())):
            key, separator, value = pair.partition("=")
            if not separator or key not in fields:
                raise ValueError(
                    f"{FAULT_INJECTION_ENVIRONMENT}={text!r}: {pair!r} is not one of key=value with keys {sorted(fields)}"
                )
            kind, described = {"int": (int, "an integer"), "float": (float, "a number")}.get(fields[key], (str, ""))
            try:
                values[key] = kind(value)
            except ValueError:
                raise ValueError(f"{FAULT_INJECTION_ENVIRONMENT}: {key}={value!r} must be {described}") from None
        missing = {"signal", "target", "iteration"} - set(values)
        if missing:
            raise ValueError(f"{FAULT_INJECTION_ENVIRONMENT}={text!r} lacks {sorted(missing)}")
        return cls(**values)

    @classmethod
    def from_environment(cls, environ=None) -> "FaultInjection | None":
        text = (os.environ if environ is None else environ).get(FAULT_INJECTION_ENVIRONMENT, "")
        return cls.parse(text) if text.strip() else None


def send(fault: FaultInjection) -> None:
    """Send ``fault.signal`` to ``fault.target`` once, logging it with the time."""
    number = signal.Signals[fault.signal]
    target = fault.target
    logger.warning("fault injection: %s to %s at %.3f", fault.signal, target, time.time())
    if target == "rank":
        os.kill(os.getpid(), number)
    elif target == "group":
        os.killpg(os.getpgrp(), number)
    elif target == "node":
        launcher = psutil.Process(os.getppid()).parent()
        everyone = [launcher, *launcher.children(recursive=True)]
        for process in [*(p for p in everyone if p.pid != os.getpid()), psutil.Process()]:  # this process last
            try:
                process.send_signal(number)
            except psutil.NoSuchProcess:
                pass
    elif target in ("torchrun", "launcher", "script"):
        process = psutil.Process(os.getppid())
        for _ in range(("torchrun", "launcher", "script").index(target)):
            process = process.parent()
        process.send_signal(number)
    else:
        job = os.environ.get("SLURM_JOB_ID")
        if job is None:
            raise ValueError(f"{FAULT_INJECTION_ENVIRONMENT}: target {target} needs a SLURM job (no SLURM_JOB_ID)")
        scope = ["--batch"] if target == "job_batch" else []
        subprocess.run(["scancel", f"--signal={fault.signal.removeprefix('SIG')}", *scope, job], check=True)


def _send_later(fault: FaultInjection, first_wait: float, times: int) -> None:
    time.sleep(first_wait)
    for count in range(times):
        if count:
            time.sleep(fault.interval)
        send(fault)


class FaultInjectionHook(Hook):
    """Injects ``fault`` on its rank at its iteration and point of the step: without a delay the first signal
    is sent from the step itself (so its place among the hooks is exact), the rest from a thread."""

    def __init__(self, fault: FaultInjection) -> None:
        self.fault = fault
        self.priority = WHEN_PRIORITY[fault.when]

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        fault = self.fault
        if result.iteration != fault.iteration or dist.get_rank() != fault.rank:
            return
        if int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0:
            return
        later, first_wait = fault.repeat, fault.delay
        if not fault.delay:
            send(fault)
            later, first_wait = fault.repeat - 1, fault.interval
        if later:
            threading.Thread(target=_send_later, args=(fault, first_wait, later), daemon=True).start()
