"""Steps that write output every way a step can: for the step-log tests."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path


def chatty(tag: str = "x", **upstream: object) -> str:
    """Write one line through print, os.write on fd 1, a subprocess's echo, stderr and logging."""
    print(f"print-{tag}")
    os.write(1, f"oswrite-{tag}\n".encode())
    subprocess.run(["echo", f"echo-{tag}"], check=True)
    print(f"stderr-{tag}", file=sys.stderr)
    logging.warning("warning-%s", tag)
    return "done"


def flood(mib: int = 5, line: int = 100) -> int:
    """Print ``mib`` MiB of text through print, in lines of ``line`` bytes."""
    text = ("y" * (line - 1) + "\n") * (1024 * 1024 // line)
    for _ in range(mib):
        sys.stdout.write(text)
    sys.stdout.flush()
    return mib


def fail_loud(lines: int = 30, log: bool = False) -> None:
    """Write ``lines`` numbered stderr lines (with ``log``, then a logging error and an info
    record), then raise."""
    for i in range(lines):
        print(f"complaint {i}", file=sys.stderr)
    if log:
        logging.getLogger("loud").error("logged error")
        logging.getLogger("loud").info("not shown: below WARNING")
    raise RuntimeError("it went wrong")


def wait_for_go(path: str) -> str:
    """Print 'first', wait until ``path`` exists, print 'second'."""
    print("first", flush=True)
    while not Path(path).exists():  # the test creates it once it saw 'first'
        time.sleep(0.02)
    print("second", flush=True)
    return "went"


def chatter(lines: int = 400, pause: float = 0.002) -> str:
    """Print ``lines`` marked lines over a while (a workload, not a synchronisation)."""
    for i in range(lines):
        print(f"STEPTEXT {i}", flush=True)
        print(f"STEPTEXT-ERR {i}", file=sys.stderr, flush=True)
        time.sleep(pause)
    return "quiet"


def chatter_until(path: str) -> str:
    """Print marked lines every way a step can until ``path`` exists."""
    i = 0
    while not Path(path).exists():  # the test creates it once it saw the live view
        print(f"STEPTEXT print {i}", flush=True)
        os.write(1, f"STEPTEXT os.write {i}\n".encode())
        print(f"STEPTEXT stderr {i}", file=sys.stderr, flush=True)
        logging.warning("STEPTEXT logging %d", i)
        if i % 20 == 0:
            subprocess.run(["echo", f"STEPTEXT echo {i}"], check=True)
        i += 1
        time.sleep(0.01)  # pacing: how fast it prints, not a synchronisation
    return "quiet"


def hang_loud(lines: int = 3) -> None:
    """Write ``lines`` stderr lines, then block until the step's timeout stops it."""
    for i in range(lines):
        print(f"before the hang {i}", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)
