"""A rank whose launcher died stops at once, with everything it started.

torchrun starts each rank in a session of its own, so when torchrun is killed (``kill -9``, an OOM kill) its
ranks live on as orphans: they would train on, unseen, while a restart starts new ranks writing the same
checkpoints. ``watch_launcher()`` checks every ``interval`` seconds whether the rank's parent is still the
process that started it; once it is not, the rank kills its process group (itself, its DataLoader workers,
megatron-core's checkpoint writer), as a lost node would. A launcher's planned stop goes through the stop
signals instead, and the ranks exit before their launcher does. Only ranks started by torchrun are watched
(``TORCHELASTIC_RUN_ID`` set): a process started from a shell is not killed when the shell goes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

logger = logging.getLogger(__name__)


def _watch(launcher: int, interval: float) -> None:
    while os.getppid() == launcher:
        time.sleep(interval)
    logger.error("the launcher (pid %d) is gone: stopping this rank and the processes it started now", launcher)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def watch_launcher(interval: float = 1.0) -> bool:
    """Start watching this rank's launcher; False (nothing watched) outside torchrun."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return False
    threading.Thread(target=_watch, args=(os.getppid(), interval), name="launcher-watch", daemon=True).start()
    return True
