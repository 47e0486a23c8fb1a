"""Make an actor process exit by itself when the actor that started it dies.

tractor 0.1.0a5 leaves children running when their parent is killed (SIGKILL) or terminated
without clean-up. ``PR_SET_PDEATHSIG`` is not usable (trio starts children from a worker
thread, and the signal fires when that thread exits), so each actor polls from a daemon thread
and exits at once when its starter is gone.

The starter is the parent process, except for actors forked by a forkserver: their parent is
the forkserver, which outlives the actor that asked for them (every forked child holds the
forkserver's "alive" pipe open), so they watch the forkserver's parent instead.
"""

from __future__ import annotations

import os
import threading
import time

import psutil

__all__ = ["EXIT_CODE", "POLL_INTERVAL", "watch_parent"]

POLL_INTERVAL = 0.1
EXIT_CODE = 70

_started = threading.Event()


def watch_parent(*, forked: bool = False) -> None:
    """Start (once per process) a daemon thread that ``os._exit``s when the starter is gone.

    ``forked``: this process was forked by a forkserver, so the starter is the forkserver's
    parent. Calling it again does nothing.
    """
    if _started.is_set():
        return
    _started.set()
    parent = os.getppid()
    if not forked:

        def gone() -> bool:
            return os.getppid() != parent

    else:
        starter = psutil.Process(parent).parent()
        if starter is None:
            os._exit(EXIT_CODE)

        def gone() -> bool:
            return not starter.is_running()

    def poll() -> None:
        while not gone():
            time.sleep(POLL_INTERVAL)
        os._exit(EXIT_CODE)

    threading.Thread(target=poll, name="mcpp-parent-watch", daemon=True).start()
