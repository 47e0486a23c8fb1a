"""Step functions for the runtime tests: importable by name from step processes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel


def number(value: int) -> int:
    return value


def add(**values: int) -> int:
    return sum(values.values())


def double(a: int) -> int:
    return 2 * a


async def async_triple(a: int) -> int:
    await trio.lowlevel.checkpoint()
    return 3 * a


def fail(message: str = "boom", **upstream: Any) -> None:
    raise ValueError(message)


def spin() -> None:
    while True:
        pass


def sleep_long() -> None:
    time.sleep(60)


def write_pid(path: str) -> None:
    Path(path).write_text(str(os.getpid()))


def touch(path: str, **upstream: Any) -> str:
    Path(path).write_text(str(os.getpid()))
    return path


def wait_for(path: str, limit: float = 60.0, **upstream: Any) -> str:
    """Return once ``path`` exists; raise TimeoutError after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "released"


def pid_then_wait(pid_file: str, release: str, limit: float = 60.0, **upstream: Any) -> str:
    """Write this process's pid to ``pid_file``, then wait for ``release`` to exist."""
    write_pid(pid_file)
    return wait_for(release, limit)


def unencodable() -> object:
    return object()


def hold_resource(folder: str, name: str, seconds: float = 0.3, **upstream: Any) -> int:
    """Hold a "resource" for ``seconds``; return how many holders there were at once (peak)."""
    mine = Path(folder) / name
    mine.write_text("held")
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, len(list(Path(folder).iterdir())))
        time.sleep(0.01)
    mine.unlink()
    return peak


def pid(**upstream: Any) -> int:
    return os.getpid()


def increment(start: int = 0, **upstream: int) -> int:
    """``start`` plus one, or the single upstream result plus one."""
    return (next(iter(upstream.values())) if upstream else start) + 1


def fail_once(marker: str, **upstream: int) -> int:
    """Fail the first time (when ``marker`` does not exist yet), then pass the value on."""
    if not os.path.exists(marker):
        Path(marker).write_text("failed once")
        raise RuntimeError("first attempt fails")
    return next(iter(upstream.values())) + 1


def spin_after(**upstream: Any) -> None:
    while True:
        pass
