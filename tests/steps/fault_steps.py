"""Step functions for the fault matrix (tests/test_faults.py): each misbehaves in one way.

Steps that start processes write the pids they started to ``pid_file`` (atomically, so a file
that exists is complete), so the test can check that exactly those processes are gone.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import time
from typing import Any

import trio

MIB = 1 << 20


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def wait_file(path: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


# --- plain outcomes ----------------------------------------------------------------------------


def number(value: int = 1, **upstream: Any) -> int:
    return value


def fail(message: str = "boom", **upstream: Any) -> None:
    raise ValueError(message)


def quick(index: int, seconds: float = 0.01, **upstream: Any) -> int:
    time.sleep(seconds)
    return index


def count(**upstream: Any) -> int:
    return len(upstream)


def unencodable(**upstream: Any) -> object:
    return object()


# --- not stopping ------------------------------------------------------------------------------


def spin(**upstream: Any) -> None:
    while True:
        pass


def sleep(seconds: float = 60.0, **upstream: Any) -> str:
    time.sleep(seconds)
    return "slept"


async def block_loop(seconds: float = 15.0, **upstream: Any) -> str:
    """An async step that blocks its event loop (a sync call where an await belongs)."""
    time.sleep(seconds)  # noqa: ASYNC251 (blocking the loop is the point)
    await trio.lowlevel.checkpoint()
    return "woke"


def sigstop_self(**upstream: Any) -> str:
    """Stop this whole process (every thread of the runtime with it)."""
    os.kill(os.getpid(), signal.SIGSTOP)
    return "continued"


# --- dying ---------------------------------------------------------------------------------------


def sigkill_self(delay: float = 0.0, **upstream: Any) -> None:
    if delay:
        time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(**upstream: Any) -> None:
    ctypes.string_at(0)


def exit_zero(**upstream: Any) -> None:
    os._exit(0)


# --- memory --------------------------------------------------------------------------------------


def vm_size() -> int:
    """This process's virtual memory size in bytes."""
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def limit_memory(headroom_mb: int) -> None:
    """Set the soft RLIMIT_AS to the current size plus ``headroom_mb`` MiB."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = vm_size() + headroom_mb * MIB
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def memory_error(headroom_mb: int = 100, alloc_mb: int = 1024, **upstream: Any) -> int:
    limit_memory(headroom_mb)
    block = bytearray(alloc_mb * MIB)  # raises MemoryError
    return len(block)


def allocate(mb: int = 300, **upstream: Any) -> int:
    block = bytearray(mb * MIB)
    block[-1] = 1
    return len(block) // MIB


HELD: list[bytearray] = []  # what swallow_memory_error keeps after it returns


def swallow_memory_error(headroom_mb: int = 32, seconds: float = 1.0, **upstream: Any) -> str:
    """Exhaust the address space, swallowing every MemoryError for ``seconds``, then return
    while still holding all of it (in a module global): the actor's runtime is left with no
    memory to report the result or to send its heartbeats."""
    limit_memory(headroom_mb)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:  # noqa: SIM105 (the plain `except MemoryError: pass` is the scenario)
            HELD.append(bytearray(MIB))
        except MemoryError:
            pass
    return "returned"


# --- processes -----------------------------------------------------------------------------------


def popen_sleep(
    pid_file: str, wait_for: str | None = None, seconds: int = 300, **upstream: Any
) -> int:
    """Start ``sleep``, write its pid, wait for it (optionally after ``wait_for`` exists)."""
    if wait_for is not None:
        wait_file(wait_for)
    child = subprocess.Popen(["sleep", str(seconds)])
    write_atomic(pid_file, str(child.pid))
    return child.wait()


def started_then_sleep(pid_file: str, seconds: float = 60.0, **upstream: Any) -> str:
    """Start ``sleep 300``; write its pid and this process's (the "started" mark); sleep."""
    child = subprocess.Popen(["sleep", "300"])
    write_atomic(pid_file, f"{child.pid} {os.getpid()}")
    time.sleep(seconds)
    return "slept"


def spawn_daemon() -> int:
    """Double-fork a ``sleep 300`` daemon in a session of its own; return its pid."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the intermediate
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() == 0:  # the daemon
                try:
                    os.write(write_end, str(os.getpid()).encode())
                    os.close(write_end)
                    os.execvp("sleep", ["sleep", "300"])
                finally:
                    os._exit(127)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(read_end, 64):
        data += chunk
    os.close(read_end)
    return int(data)


def daemonize(pid_file: str, result: int = 42, then_sleep: float = 0.0, **upstream: Any) -> int:
    """Leave a daemon behind, write its pid, then (optionally sleep and) return ``result``."""
    daemon = spawn_daemon()
    write_atomic(pid_file, str(daemon))
    if then_sleep:
        time.sleep(then_sleep)
    return result


# --- process-wide state (pool hygiene) -----------------------------------------------------------


def _fd(fd: int) -> list[int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def _handler(signum: int) -> str:
    handler = signal.getsignal(signum)
    if handler is signal.SIG_DFL:
        return "SIG_DFL"
    if handler is signal.SIG_IGN:
        return "SIG_IGN"
    if handler is None:
        return "None"
    return f"python:{getattr(handler, '__name__', repr(handler))}"


def observe(**upstream: Any) -> dict[str, Any]:
    """What a step sees of the process-wide state."""
    return {
        "nofile_soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "as_soft": resource.getrlimit(resource.RLIMIT_AS)[0],
        "fd0": _fd(0),
        "fd1": _fd(1),
        "fd2": _fd(2),
        "cwd": os.getcwd(),
        "leak": os.environ.get("MCPP_LEAK"),
        "sigusr1": _handler(signal.SIGUSR1),
        "umask": _umask(),
    }


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def mutate(**upstream: Any) -> str:
    """Change process-wide state: rlimit, stdio, cwd, environment."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    os.close(0)
    os.chdir("/")
    os.environ["MCPP_LEAK"] = "1"
    return "mutated"


def _on_usr1(signum: int, frame: Any) -> None:
    pass


async def install_sigusr1(**upstream: Any) -> str:
    """An async step (in the worker's main thread): install a SIGUSR1 handler."""
    signal.signal(signal.SIGUSR1, _on_usr1)
    await trio.lowlevel.checkpoint()
    return _handler(signal.SIGUSR1)


def loud(**upstream: Any) -> int:
    """Print through print(), a raw write to fd 1 and a subprocess; return 7."""
    print("printed by a step", flush=True)
    os.write(1, b"written to fd 1 by a step\n")
    subprocess.run(["echo", "echoed by a subprocess of a step"], check=True)
    return 7
