"""Stop signals reach the training process only: its children (started before or after) carry on, the
signal is recorded, and at exit the children still running are killed (they no longer stop on SIGTERM)."""

import subprocess
import sys

PROGRAM = """
import logging, multiprocessing as mp, os, signal, sys, time
from megatron_vl.runtime.stop_signals import stop_signal_received, watch_stop_signals

def child(queue):
    time.sleep(1.0)
    queue.put(os.getpid())

if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, format="%(message)s")
    watch_stop_signals()
    watch_stop_signals()
    queue = mp.get_context("spawn").Queue()
    manager = mp.get_context("spawn").Manager()
    worker = mp.get_context("spawn").Process(target=child, args=(queue,))
    worker.start()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) >= set(signal.Signals(s) for s in (10, 15))
    time.sleep(0.3)
    os.killpg(os.getpgrp(), signal.SIGUSR1)
    os.killpg(os.getpgrp(), signal.SIGTERM)
    assert queue.get(timeout=20) == worker.pid, "the child did not survive the signals"
    assert manager.list([1]) is not None, "the manager did not survive the signals"
    time.sleep(0.2)
    print(signal.Signals(stop_signal_received()).name)
    lingering = mp.get_context("spawn").Process(target=time.sleep, args=(60,), daemon=True)
    lingering.start()
    print(lingering.pid, flush=True)
"""


def test_children_survive_the_signal_the_parent_records_it_and_exit_kills_them(tmp_path):
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60,
                            start_new_session=True)
    assert result.returncode == 0, result.stderr
    received, lingering = result.stdout.splitlines()
    assert received == "SIGUSR1"
    assert [line.split()[0] for line in result.stderr.splitlines() if " received: " in line] == ["SIGUSR1", "SIGTERM"]
    state = subprocess.run(["ps", "-o", "stat=", "-p", lingering], capture_output=True, text=True).stdout.strip()
    assert state in ("", "Z"), f"the lingering child {lingering} outlived its parent ({state})"
