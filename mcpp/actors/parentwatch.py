"""Make an actor process exit by itself when the process that started it dies.

tractor 0.1.0a5 leaves children running when their parent is killed (SIGKILL) or terminated
without clean-up: they are re-parented and live on. ``PR_SET_PDEATHSIG`` is not usable (trio
starts children from a worker thread, and the signal fires when that thread exits), so each
actor polls its parent pid from a daemon thread and exits at once when it changes.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["POLL_INTERVAL", "watch_parent"]

POLL_INTERVAL = 0.1
EXIT_CODE = 70

_started = threading.Event()


def watch_parent(parent_pid: int | None = None) -> None:
    """Start (once per process) a daemon thread that ``os._exit``s when the parent changes.

    ``parent_pid`` defaults to the current parent. Calling it again does nothing.
    """
    if _started.is_set():
        return
    _started.set()
    expected = os.getppid() if parent_pid is None else parent_pid

    def poll() -> None:
        while True:
            if os.getppid() != expected:
                os._exit(EXIT_CODE)
            time.sleep(POLL_INTERVAL)

    threading.Thread(target=poll, name="mcpp-parent-watch", daemon=True).start()
