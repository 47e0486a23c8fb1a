"""Make an actor process exit by itself when the actor that started it dies.

tractor 0.1.0a5 leaves children running when their parent is killed (SIGKILL) or terminated
without clean-up. ``PR_SET_PDEATHSIG`` is not usable (trio starts children from a worker
thread, and the signal fires when that thread exits), so each actor polls from a daemon thread
and, once its starter is gone, ends its own descendants (see :mod:`mcpp.actors.contain`), runs
the clean-ups registered with :func:`on_exit` and exits.

The starter is the parent process, except for actors forked by the coordinator's fork server
(:mod:`mcpp.actors.spawner`): their parent is the server, which lives as long as the
coordinator holds its socket, so they watch the server's parent (the coordinator) instead. A
starter that is a zombie (dead, not yet reaped by its own parent) counts as gone. Actors start
the watch from the first line of their entry point (``mcpp.actors.tractor._child``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil

from mcpp.actors import contain

__all__ = ["EXIT_CODE", "POLL_INTERVAL", "on_exit", "watch_parent"]

POLL_INTERVAL = 0.1
EXIT_CODE = 70

_started = threading.Event()
_cleanups: list[Callable[[], None]] = []


def on_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` (after the descendants are ended) if this actor exits for its starter."""
    _cleanups.append(cleanup)


def starter_gone(starter: psutil.Process) -> bool:
    """True if ``starter`` has exited, zombie or reaped."""
    try:
        return starter.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def exit_for_starter() -> None:
    """End this process's descendants, run the clean-ups, exit with :data:`EXIT_CODE`."""
    try:
        contain.end_descendants()
        for cleanup in _cleanups:
            cleanup()
    finally:
        os._exit(EXIT_CODE)


def watch_parent(*, forked: bool = False, parent: int | None = None) -> None:
    """Start (once per process) a daemon thread that exits this process when its starter dies.

    ``forked``: this process was forked by the fork server, so the starter is the server's
    parent. ``parent``: the pid this process was started by (so a parent that died before
    this call is noticed at once); by default the current parent. Calling it again does
    nothing. Actors call it from the first lines of their entry point, before the runtime
    starts (a starter killed during start-up must not leave them behind).
    """
    if _started.is_set():
        return
    _started.set()
    if parent is None:
        parent = os.getppid()
    if not forked:

        def gone() -> bool:
            return os.getppid() != parent

    else:
        try:
            starter = psutil.Process(parent).parent()
        except psutil.NoSuchProcess:
            starter = None
        if starter is None:
            exit_for_starter()
            return

        def gone() -> bool:
            return os.getppid() != parent or starter_gone(starter)

    def poll() -> None:
        while not gone():
            time.sleep(POLL_INTERVAL)
        exit_for_starter()

    threading.Thread(target=poll, name="mcpp-parent-watch", daemon=True).start()
