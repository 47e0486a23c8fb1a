"""The live view on a real (pseudo-)terminal while steps print: no step text between frames.

``mcpp spawn`` runs with its standard input, output and error on a pseudo-terminal (python's
``pty``), so rich draws its live view; the steps print every way they can for as long as the
test keeps them going. Everything the terminal received is then searched for the steps' text.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import sys
import termios
import time

import pytest

from tests.cli.test_logs import task, workflow
from tests.world import World, cli_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the CLI tests run on Linux (/proc, prctl)"
)


class Terminal:
    """The master side of a pseudo-terminal, and everything read from it."""

    def __init__(self, rows: int = 40, columns: int = 120) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.received = b""

    def read_until(self, done: object, timeout: float) -> bool:
        """Read until ``done(received)`` is true (True) or the terminal closes (False);
        fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not done(self.received):  # type: ignore[operator]
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the terminal got: {self.received[-3000:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError as exc:  # EIO: every process holding the terminal is gone
                if exc.errno != errno.EIO:
                    raise
                return False
            if not chunk:
                return False
            self.received += chunk
        return True


@pytest.mark.parametrize("mode", ["per_step", "pool"])
def test_the_live_view_shows_no_step_output(world: World, mode: str) -> None:
    go = world.workdir / "go"
    wf = workflow(
        world,
        mode,
        task("talk", "chatter_until", args={"path": str(go)}),
        task("also", "chatter_until", args={"path": str(go)}),
        name="tty",
    )
    terminal = Terminal()
    env = {**cli_env(world), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = world.spawn(
        [sys.executable, "-m", "mcpp.supervisor", "spawn", "--no-journal", str(wf)],
        cwd=world.cwd,
        env=env,
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
        start_new_session=True,
    )
    os.close(terminal.slave)
    try:
        # The live view's rows for running steps: both steps are printing by then.
        assert terminal.read_until(lambda got: got.count(b"attempt 1") >= 4, 90)
        go.touch()
        terminal.read_until(lambda got: False, 90)  # to the end: the run is over
    finally:
        os.close(terminal.master)
    assert proc.wait(timeout=30) == 0
    screen = terminal.received
    assert b"\x1b[" in screen  # rich drew with control sequences: a live view, not plain lines
    assert b"STEPTEXT" not in screen
    assert b"succeeded" in screen  # the summary table
    logged = (world.home / "runs").glob("*/logs/talk/1.log")
    assert b"STEPTEXT print" in next(logged).read_bytes()  # the text went to the log instead
