"""Step functions of the benchmarks, importable by name from any child process.

Every function takes keyword arguments only, as mcpp passes them: a step's ``args`` plus one
keyword per upstream step (its result). The stdlib baseline and the optional peers call the same
functions the same way, so every system runs the same code. Nothing here imports mcpp, trio or
tractor: the baseline's worker processes stay as light as a plain ``ProcessPoolExecutor``'s.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

__all__ = [
    "daemonize", "getpid", "make_bytes", "noop", "raise_now", "relay", "shell_sleep", "sleep",
    "spin",
]  # fmt: skip


def noop(**upstream: Any) -> None:
    """Do nothing; ignore every upstream result."""


def spin(iterations: int, **upstream: Any) -> int:
    """Burn CPU in a pure-Python loop of ``iterations`` rounds; return a checksum."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def make_bytes(size: int, **upstream: Any) -> bytes:
    """Return ``size`` bytes (not all zero, so nothing can shortcut them)."""
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


def relay(**upstream: Any) -> Any:
    """Return the result of the single upstream step unchanged (``None`` if there is none)."""
    if len(upstream) > 1:
        raise TypeError(f"relay takes one upstream result, got {sorted(upstream)}")
    return next(iter(upstream.values()), None)


def sleep(seconds: float, **upstream: Any) -> None:
    """Sleep ``seconds`` (a blocking sleep: an idle process, no CPU)."""
    time.sleep(seconds)


def raise_now(**upstream: Any) -> None:
    """Raise RuntimeError whose message is the wall-clock time (``time.time()``) of the raise."""
    raise RuntimeError(repr(time.time()))


def getpid(**upstream: Any) -> int:
    """Return the process id of the process that runs the call."""
    return os.getpid()


def shell_sleep(seconds: float, **upstream: Any) -> None:
    """Run ``sleep SECONDS`` as a child process and wait for it (a step that shells out)."""
    subprocess.run(["sleep", str(seconds)], check=True)


def daemonize(seconds: float, **upstream: Any) -> str:
    """Start a daemon (fork, setsid, fork, exec ``sleep SECONDS``) and return at once.

    Returns the wall-clock time (``time.time()``) of the return, as text.
    """
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", str(seconds)])
        os._exit(0)
    os.waitpid(pid, 0)
    return repr(time.time())
