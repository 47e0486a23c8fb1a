"""Step functions for the intruder tests (tests/test_intruders.py).

:func:`gate` holds its actor busy while the test attacks: it writes its pid to ``started``
(atomically, so a file that exists is complete) and waits until ``go`` exists (bounded by
``limit`` seconds, then it fails, so a lost test cannot hang a run). Its result is computed
from its arguments, so the test knows exactly what a correct run returns.
"""

from __future__ import annotations

import os
import time
from typing import Any


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def gate(started: str, go: str, value: int, limit: float = 60.0, **upstream: Any) -> int:
    """Write this pid to ``started``, wait for ``go``; return ``value * 10 + len(upstream)``."""
    write_atomic(started, str(os.getpid()))
    deadline = time.monotonic() + limit
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{go} never appeared")
        time.sleep(0.02)
    return value * 10 + len(upstream)


def total(**upstream: Any) -> int:
    """The sum of the upstream results (each an int)."""
    return sum(int(v) for v in upstream.values())
