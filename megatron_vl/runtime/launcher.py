"""torchrun for the launch scripts: ``python -m megatron_vl.runtime.launcher [torchrun arguments]``.

It runs ``torch.distributed.run`` with two differences:

* SIGTERM and SIGUSR1 go to the ranks, not to torchrun. torchrun's own handling of a stop signal forwards it
  to its workers and waits for them, but a second signal aborts that wait (SLURM signals every process of a
  step; a warning may come twice), torchrun exits, and its ranks are killed in the middle of the save the
  signal asked for. So torchrun ignores both, and this process passes each one it gets to every rank (as
  SLURM itself may, with ``scancel --signal``): the ranks save, exit 0, and torchrun then ends like any
  finished run. The ignored signals stay ignored in the ranks until the training entry point takes them over
  (``runtime.stop_signals``).
* Nothing torchrun started outlives it. Each rank is the leader of a process group of its own (with its
  DataLoader workers and megatron-core's checkpoint writer); once torchrun has exited, every such group is
  killed. A rank killed by ``kill -9`` would otherwise leave its children behind, and ranks whose torchrun was
  killed would train on unseen.

The exit status is torchrun's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from megatron_vl.runtime.stop_signals import STOP_SIGNALS

TORCHRUN_HANDLED_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"
"""torchrun's default list without SIGTERM; it never handled SIGUSR1 by default."""
POLL_SECONDS = 0.5


def _rank_groups(torchrun: psutil.Process) -> set[int]:
    groups = set()
    try:
        for child in torchrun.children():
            groups.add(os.getpgid(child.pid))
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass
    return groups


def _kill_groups(groups: set[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _pass_to_ranks(torchrun: psutil.Process):
    def handle(signum, frame) -> None:
        try:
            ranks = torchrun.children()
        except psutil.NoSuchProcess:
            return
        for rank in ranks:
            try:
                rank.send_signal(signum)
            except psutil.NoSuchProcess:
                pass

    return handle


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] in (["-h"], ["--help"]):
        print(__doc__)
    _ignore_stop_signals()
    command = [sys.executable, "-m", "torch.distributed.run", f"--signals-to-handle={TORCHRUN_HANDLED_SIGNALS}", *arguments]
    process = subprocess.Popen(command, preexec_fn=_ignore_stop_signals)
    torchrun = psutil.Process(process.pid)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _pass_to_ranks(torchrun))
    # Ctrl-C reaches torchrun too, which stops its workers: wait for it rather than leave it behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    while process.poll() is None:
        groups |= _rank_groups(torchrun)
        time.sleep(POLL_SECONDS)
    _kill_groups(groups - {os.getpgrp()})
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
