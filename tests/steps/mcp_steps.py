"""Steps for the MCP server's tests (tests/mcp/): one that waits at a gate, one that prints."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tests.steps.fault_steps import write_atomic

GATE_LIMIT = 120.0


def gate(mark: str, gate: str, **upstream: Any) -> str:
    """Write this process's pid to ``mark``, then wait (bounded) until the file ``gate`` exists."""
    write_atomic(mark, str(os.getpid()))
    deadline = time.monotonic() + GATE_LIMIT
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.02)
    return "opened"


def shout(lines: int = 3, **upstream: Any) -> int:
    """Print ``lines`` numbered lines to stdout and one to stderr; return ``lines``."""
    import sys

    for i in range(lines):
        print(f"line {i}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    return lines
