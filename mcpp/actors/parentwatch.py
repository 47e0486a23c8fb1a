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

An actor whose runtime fails while its starter is gone (the connection back to a starter killed
during start-up is refused) leaves the same way, quietly, instead of printing a traceback onto
a terminal nobody waits on: :func:`starter_left` tells it so (``mcpp.actors.tractor._entry``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import NoReturn

import psutil

from mcpp.actors import contain

__all__ = [
    "EXIT_CODE",
    "POLL_INTERVAL",
    "exit_for_starter",
    "on_exit",
    "starter_left",
    "watch_parent",
]

POLL_INTERVAL = 0.1
EXIT_CODE = 70

_started = threading.Event()
_cleanups: list[Callable[[], None]] = []
_gone: Callable[[], bool] | None = None  # the watch's test, once :func:`watch_parent` ran


def on_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` (after the descendants are ended) if this actor exits for its starter."""
    _cleanups.append(cleanup)


def starter_gone(starter: psutil.Process) -> bool:
    """True if ``starter`` has exited, zombie or reaped."""
    try:
        return starter.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def starter_left(within: float = 0.0) -> bool:
    """True if this process's starter is gone, or is seen gone within ``within`` seconds.

    A starter killed with SIGKILL closes its sockets a moment before it is seen to exit (the
    kernel closes a dying process's files before it re-parents its children), so a child whose
    connection to it was refused gives it ``within`` seconds to be seen gone. False at once in
    a process that does not watch a starter (:func:`watch_parent` was not called).
    """
    gone = _gone
    if gone is None:
        return False
    deadline = time.monotonic() + within
    while not gone():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL / 10)
    return True


def exit_for_starter() -> NoReturn:
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
    global _gone
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

        def gone() -> bool:
            return os.getppid() != parent or starter_gone(starter)

    _gone = gone

    def poll() -> None:
        while not gone():
            time.sleep(POLL_INTERVAL)
        exit_for_starter()

    threading.Thread(target=poll, name="mcpp-parent-watch", daemon=True).start()
