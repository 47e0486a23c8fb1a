"""The step log format: one file per attempt, one tagged line per line of output.

Layout, under a run's folder (:func:`mcpp.home.run_folder`)::

    logs/                 0700, made by the supervisor when the run starts
      run.json            the run: id, workflow, steps, created_at, supervisor pid, ended_at
      STEP/               0700, made when the step first writes something
        ATTEMPT.log       0600, attempt 1, 2, ... of STEP (no file: the attempt wrote nothing)

Each line of an attempt's log is ``AT<TAB>TAG<TAB>TEXT<LF>``: ``AT`` the time it was read, in
seconds since the epoch with 6 decimals; ``TAG`` is ``out`` (file descriptor 1), ``err``
(descriptor 2) or ``log:LEVEL`` (a ``logging`` record); ``TEXT`` the line's bytes without
its line break (a line longer than :data:`MAX_LINE` is cut into several). So
``cut -f3- 1.log`` is everything in order and ``awk -F'\\t' '$2=="err"' 1.log`` the stderr
alone. A log stops growing at its cap: its last line is then :data:`TRUNCATED` (``log:WARNING``).

This module is shared by the writer (:mod:`mcpp.actors.capture`, in step processes) and the
readers (:mod:`mcpp.supervisor.logs`, the coordinator's stderr tail): it imports nothing of
mcpp but the error hierarchy.
"""

from __future__ import annotations

import os
import re
from collections import deque
from typing import Final

from mcpp.errors import MCPPError

__all__ = [
    "CAP_ENV",
    "DEFAULT_CAP",
    "MAX_LINE",
    "RUN_FILE",
    "TAIL_LINES",
    "TRUNCATED",
    "attempt_path",
    "encode_line",
    "parse_cap",
    "parse_line",
    "stderr_tail",
]

DEFAULT_CAP: Final = 50 * 1024 * 1024
CAP_ENV: Final = "MCPP_LOG_CAP"
MAX_LINE: Final = 64 * 1024
TAIL_LINES: Final = 20
RUN_FILE: Final = "run.json"
TRUNCATED: Final = (
    "[mcpp] this attempt's log reached its cap of {cap} bytes ({env}): "
    "the rest of its output was dropped"
)
TAIL_SCAN: Final = 1024 * 1024  # bytes read from a log's end to find its stderr tail

STREAMS: Final = {b"out": "stdout", b"err": "stderr"}
UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
CAP_PATTERN: Final = re.compile(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_cap(text: str) -> int:
    """The log cap in bytes from ``text``: ``1048576``, ``512k``, ``50M``, ``1GiB``...

    Raises MCPPError naming :data:`CAP_ENV` for anything else, or a cap under 1 KiB.
    """
    match = CAP_PATTERN.fullmatch(text)
    if match is None:
        raise MCPPError(f"{CAP_ENV}={text!r}: expected a size in bytes such as 1048576 or 50M")
    cap = int(match[1]) * UNITS[match[2].lower()]
    if cap < 1024:
        raise MCPPError(f"{CAP_ENV}={text!r}: a log cap must be at least 1 KiB")
    return cap


def attempt_path(log_dir: str | os.PathLike[str], step: str, attempt: int) -> str:
    """The log file of ``attempt`` of ``step`` (it may not exist: the attempt wrote nothing)."""
    return os.path.join(log_dir, step, f"{attempt}.log")


def encode_line(at: float, tag: bytes, text: bytes) -> bytes:
    """One line of a log: ``text`` must hold no line break."""
    return b"%.6f\t%s\t%s\n" % (at, tag, text)


def parse_line(line: bytes) -> tuple[float, str, str | None, str] | None:
    """``(at, stream, level, text)`` of one log line (without its line break), or None if it
    is not one (a line cut short by a process killed mid-write)."""
    parts = line.split(b"\t", 2)
    if len(parts) != 3:
        return None
    at_text, tag, text = parts
    try:
        at = float(at_text)
    except ValueError:
        return None
    stream = STREAMS.get(tag)
    level = None
    if stream is None:
        if not tag.startswith(b"log:"):
            return None
        stream, level = "log", tag[4:].decode(errors="replace")
    return at, stream, level, text.decode(errors="replace")


def stderr_tail(
    log_dir: str | os.PathLike[str], step: str, attempt: int, lines: int = TAIL_LINES
) -> tuple[str, ...]:
    """The last ``lines`` stderr lines of an attempt's log, read from its last
    :data:`TAIL_SCAN` bytes; ``()`` when there is no log. Never raises for a missing or
    unreadable file."""
    try:
        with open(attempt_path(log_dir, step, attempt), "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - TAIL_SCAN))
            data = file.read(TAIL_SCAN)
    except OSError:
        return ()
    tail: deque[str] = deque(maxlen=lines)
    for raw in data.split(b"\n"):
        parsed = parse_line(raw)
        if parsed is not None and parsed[1] == "stderr":
            tail.append(parsed[3])
    return tuple(tail)
