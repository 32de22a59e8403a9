"""SIGTERM and SIGUSR1 (SLURM's warning before a time limit or a preemption, torchrun's forwarding of it) reach
the training process, and only it.

torchrun forwards a signal to each rank's whole process group, and SLURM may signal every process of the
step: the process megatron-core's checkpoint writer starts at the first save, DataLoader workers and any
other child would get it too, and a child's default action is to exit, which fails the very save the
signal asks for. So ``watch_stop_signals()``, called first thing by the training entry point (before torch
starts a thread or a process):

* blocks both signals in the calling thread; every thread and every process started afterwards inherits the
  block (the signal mask survives fork and exec), so a child keeps such a signal pending and carries on;
* receives them in a thread of its own (``sigwait``), which records the signal; the training loop reads
  ``stop_signal_received()`` after each step;
* installs a handler that records them too, for a thread that existed before the block;
* at exit, kills (SIGKILL) the child processes still running: they cannot be stopped with SIGTERM any more,
  which is how ``multiprocessing`` ends daemonic children (DataLoader workers) when a run fails.

Calling it again is harmless. Nothing here imports torch.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util  # noqa: F401 - registers its exit handler before ours (see watch_stop_signals)
import signal
from multiprocessing import resource_tracker
import threading

import psutil

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_lock = threading.RLock()  # reentrant: the handler may run in the main thread while it holds the lock
_received: list[int] = []
_watching = False


def _record(signum: int) -> None:
    with _lock:
        _received.append(signum)
    logger.warning("%s received: the run stops after the current step and saves a checkpoint", signal.Signals(signum).name)


def _handle(signum, frame) -> None:
    _record(signum)


def _wait_for_signals() -> None:
    while True:
        _record(signal.sigwait(STOP_SIGNALS))


def _kill_children() -> None:
    # Not multiprocessing's resource tracker: it ends by itself once this process is gone, after unlinking
    # what its children left behind.
    tracker = resource_tracker._resource_tracker._pid
    for child in psutil.Process().children(recursive=True):
        if child.pid == tracker:
            continue
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def watch_stop_signals() -> None:
    """Receive SIGTERM and SIGUSR1 in this process only, from now on (call it from the main thread)."""
    global _watching
    if _watching:
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # multiprocessing unblocks SIGTERM in this thread whenever it starts its resource tracker (as spawn-context
    # processes and queues do): start it now, with the signals blocked, and block them again.
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_wait_for_signals, name="stop-signals", daemon=True).start()
    # Registered after multiprocessing's exit handler (its module is imported above), so it runs first:
    # atexit is last in, first out, and that handler would wait forever on the children it SIGTERMs.
    atexit.register(_kill_children)
    _watching = True


def stop_signal_received() -> int:
    """The first stop signal this process received (its number), or 0."""
    with _lock:
        return _received[0] if _received else 0
