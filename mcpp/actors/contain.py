"""Containment: every process a step attempt starts ends with the attempt (Linux).

Each actor that runs steps is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so what a
step starts stays below its actor even when it double-forks and calls ``setsid``: an orphan
re-parents to the nearest subreaper above it, not to init. When an attempt ends, its actor ends
every descendant it has: SIGTERM (and SIGCONT, so a stopped process gets it), then SIGKILL for
what is still alive after :data:`GRACE` seconds.

An actor that is killed cannot do that, so the processes above it are subreapers as well: the
coordinator (step and worker actors are its grandchildren, through its fork server) and the
supervisor of ``mcpp spawn``. Each runs :func:`sweep`, which ends every child it did not start
itself: those are orphans of an actor that died.

What cannot be tracked: a process handed to another daemon (``at``, ``systemd-run``, a container
runtime, a remote host) is that daemon's child, not the step's. On systems without
``PR_SET_CHILD_SUBREAPER`` (not Linux) only the step's own process group can be ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterable

import trio

__all__ = [
    "GRACE",
    "SWEEP_INTERVAL",
    "ChildWatch",
    "alive",
    "become_subreaper",
    "below",
    "children",
    "end",
    "end_descendants",
    "is_subreaper",
    "sweep",
    "tree",
]

GRACE = 1.0
SWEEP_INTERVAL = 0.1
POLL = 0.01
PR_SET_CHILD_SUBREAPER = 36


_subreaper = False


def become_subreaper(*, sweep: bool = True) -> bool:
    """Make this process a child subreaper; return False where the system cannot.

    Only processes mcpp owns call it: with ``sweep``, a run supervised here ends the children
    it did not start (:func:`is_subreaper`), which a user's own program could not allow.
    """
    global _subreaper
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    done = bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    _subreaper = _subreaper or (done and sweep)
    return done


def is_subreaper() -> bool:
    """True if :func:`become_subreaper` made this process a subreaper that sweeps."""
    return _subreaper


def children(pid: int | str = "self") -> list[int]:
    """The child pids of ``pid`` (every thread's children), zombies included."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                found.extend(int(p) for p in file.read().split())
        except OSError:
            continue
    return found


def tree(pid: int | str = "self") -> list[int]:
    """Every descendant of ``pid``, parents before their children."""
    found: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is a zombie child of this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def end(find: Callable[[], Iterable[int]], grace: float = GRACE, *, reap: bool = True) -> int:
    """End every process ``find()`` names, until it names none that is alive.

    Each gets SIGTERM (with SIGCONT) first and SIGKILL once ``grace`` seconds have passed;
    ``grace=0`` kills at once. With ``reap``, zombies among this process's children are
    collected. ``find`` is called again each round, so processes that appear meanwhile (a
    grandchild re-parented to this subreaper) are ended too. Returns how many processes were
    signalled.
    """
    signalled: dict[int, int] = {}
    deadline = time.monotonic() + grace
    while True:
        live = []
        for pid in find():
            if alive(pid):
                live.append(pid)
            elif reap:
                _reap(pid)
        if not live:
            return len(signalled)
        sig = signal.SIGKILL if time.monotonic() >= deadline else signal.SIGTERM
        for pid in live:
            if signalled.get(pid) == sig:
                continue
            signalled[pid] = sig
            try:
                os.kill(pid, sig)
                if sig == signal.SIGTERM:
                    os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        time.sleep(POLL)


def below(keep: Collection[int] = ()) -> list[int]:
    """This process's children but ``keep``, each followed by its own descendants."""
    found = []
    for child in children():
        if child not in keep:
            found.append(child)
            found.extend(tree(child))
    return found


def end_descendants(grace: float = GRACE, *, keep: Collection[int] = ()) -> int:
    """End every descendant of this process but ``keep`` (and theirs); return the count."""
    return end(lambda: below(keep), grace)


class ChildWatch:
    """A cheap look at this process's children after each pool step.

    Reading the ``children`` file of a thread costs well under a microsecond once it is open,
    so every thread's file is kept open; the set of threads is read again (``/proc/self/task``)
    only when Python's count of threads has changed, so a thread a step started is watched too.
    """

    def __init__(self) -> None:
        import threading

        self.threads = threading
        self.count = -1
        self.fds: dict[str, int] = {}

    def _rescan(self) -> None:
        try:
            tids = set(os.listdir("/proc/self/task"))
        except OSError:
            tids = set()
        for tid in set(self.fds) - tids:
            os.close(self.fds.pop(tid))
        for tid in tids - set(self.fds):
            with contextlib.suppress(OSError):
                self.fds[tid] = os.open(f"/proc/self/task/{tid}/children", os.O_RDONLY)

    def any(self) -> bool:
        """True if this process has a child (live or zombie)."""
        count = self.threads.active_count()
        if count != self.count:
            self.count = count
            self._rescan()
        return any(os.pread(fd, 64, 0) for fd in self.fds.values())


async def sweep(known: Callable[[], Collection[int]], interval: float = SWEEP_INTERVAL) -> None:
    """Task: end every child of this subreaper that ``known()`` does not name, forever.

    Those are orphans: processes whose own parent (an actor that died) is gone. Each is ended
    with its descendants (SIGTERM, then SIGKILL after :data:`GRACE`), in a thread, so the event
    loop goes on meanwhile.
    """

    def orphans() -> list[int]:
        return below(known())

    while True:
        await trio.sleep(interval)
        if orphans():
            await trio.to_thread.run_sync(end, orphans)
