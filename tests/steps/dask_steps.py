"""Steps for the dask-mode tests (tests/cluster/test_dask.py). They run on Dask workers, in
the attempt process a task starts: ``os.getppid()`` is the Dask worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def worker_pid(**upstream: Any) -> int:
    """The pid of the Dask worker process running this attempt."""
    return os.getppid()


def fail(message: str = "boom", **upstream: Any) -> None:
    raise ValueError(message)


def spin_with_child(pid_file: str, **upstream: Any) -> None:
    """Start a child that sleeps, write both pids and the worker's, then busy-loop forever."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    _write(pid_file, f"{os.getpid()} {child.pid} {os.getppid()}")
    while True:
        pass


def kill_self(**upstream: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hold(pid_file: str, seconds: float = 60.0, **upstream: Any) -> str:
    """Write the worker's pid and this process's, then sleep ``seconds``."""
    _write(pid_file, f"{os.getppid()} {os.getpid()}")
    time.sleep(seconds)
    return "slept"


def count_runs(path: str, gate: str | None = None, **upstream: Any) -> int:
    """Append a line to ``path`` (how many times this step ran); wait for ``gate`` if given.

    ``PATH.pid`` gets this attempt process's pid."""
    _write(f"{path}.pid", str(os.getpid()))
    with open(path, "a") as file:
        file.write("ran\n")
    if gate is not None:
        while not os.path.exists(gate):
            time.sleep(0.02)
    with open(path) as file:
        return len(file.readlines())


def meet(folder: str, peers: int, **upstream: Any) -> int:
    """Wait (up to 60 s) until ``peers`` steps have entered ``folder``; return the worker pid.

    Steps that meet run at the same time, so each holds a worker of its own.
    """
    _write(os.path.join(folder, str(os.getpid())), "here")
    deadline = time.monotonic() + 60
    while len([n for n in os.listdir(folder) if not n.endswith(".tmp")]) < peers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {peers} steps met")
        time.sleep(0.02)
    return os.getppid()


def fail_when(gate: str, **upstream: Any) -> None:
    """Raise once ``gate`` exists (another step wrote it)."""
    while not os.path.exists(gate):
        time.sleep(0.02)
    raise RuntimeError("failing on purpose")


def net_namespace(**upstream: Any) -> str:
    """The network namespace this attempt runs in."""
    return os.readlink("/proc/self/ns/net")
