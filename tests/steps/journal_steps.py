"""Step functions for the journal tests: each execution leaves a trace that the tests count."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def record(name: str, log_dir: str, delay: float = 0.0, note: str = "", **upstream: Any) -> int:
    """Append this process's pid to ``log_dir/name`` (one line per execution), sleep ``delay``.
    ``note`` is ignored (a test changes it to change the step's definition).

    Returns 1 plus the sum of the upstream results, so a wrong or missing stored result shows.
    """
    with open(os.path.join(log_dir, name), "a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(delay)
    return 1 + int(sum(upstream.values()))


def fail_if(flag: str, name: str, log_dir: str, **upstream: Any) -> int:
    """Like :func:`record` without delay, but raise RuntimeError while the file ``flag`` exists."""
    value = record(name, log_dir, **upstream)
    if Path(flag).exists():
        raise RuntimeError(f"flag {flag} is set")
    return value
