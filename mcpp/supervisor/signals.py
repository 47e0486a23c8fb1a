"""Ctrl-C and SIGTERM that arrive before a run can act on them.

The command line installs :func:`remember` for SIGINT and SIGTERM in its first lines, before
its imports take their half second: a signal then is kept in :data:`pending` instead of ending
the process with -15 or a KeyboardInterrupt traceback from the middle of an import. The CLI
exits 130 if one came before a run started; a run that starts treats one as its first
interrupt (:func:`mcpp.supervisor.run.watch_signals`). This module imports nothing of mcpp.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["finished", "install", "pending", "remember"]

pending: list[int] = []


def remember(signum: int, frame: FrameType | None) -> None:
    """The early handler: note the signal."""
    pending.append(signum)


def install() -> None:
    """Keep SIGINT and SIGTERM in :data:`pending` from now on (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, remember)


def finished() -> None:
    """The command is over: ignore SIGINT and SIGTERM while the interpreter shuts down.

    Python resets a handler of its own to the default action at shutdown, so a second Ctrl-C
    that came a moment after the run had ended killed the process (-2) instead of letting it
    exit with its code; an ignored signal stays ignored.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
