"""Run management: cancelling a run started elsewhere, and how many runs the journal keeps.

:func:`cancel_run` stops the supervisor of a journalled run from another process: the journal
knows its pid and the process's start time, so a pid since reused by another program is never
signalled. The supervisor treats the SIGTERM as Ctrl-C: the run ends journalled as
``cancelled``, every process of it gone, and ``mcpp resume`` finishes it later.

Retention: ``MCPP_KEEP_RUNS=N`` (:data:`KEEP_RUNS_VARIABLE`) keeps the N newest runs; when a
new run starts, older runs that are not running are removed with their folders. Their pages
are left for SQLite to reuse (the file stops growing); ``mcpp runs prune`` and ``runs rm`` give
the space back to the file system.
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Final

import psutil

from mcpp.supervisor.journal import Journal, JournalError, JournalReader
from mcpp.supervisor.replay import RunStarted

__all__ = [
    "KEEP_RUNS_VARIABLE",
    "apply_retention",
    "cancel_run",
    "keep_runs_setting",
    "parse_age",
]

KEEP_RUNS_VARIABLE: Final = "MCPP_KEEP_RUNS"
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def keep_runs_setting() -> int | None:
    """``$MCPP_KEEP_RUNS`` as a number of runs, or ``None`` when it is unset or empty.

    Raises JournalError when it is not a whole number of at least 1.
    """
    text = os.environ.get(KEEP_RUNS_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise JournalError(
            f"{KEEP_RUNS_VARIABLE}={text!r}: expected a whole number of runs, 1 or more"
        )
    return int(text)


def apply_retention(journal: Journal, keep: int) -> list[str]:
    """Remove the runs beyond the ``keep`` newest that are not running; return their ids."""
    return journal.prune(keep=keep, reclaim_space=False)


def parse_age(text: str) -> float:
    """Seconds in an age such as ``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"``, ``"90"``.

    Raises ValueError for anything else.
    """
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"cannot read the age {text!r}: expected a number and s, m, h, d or w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def cancel_run(journal: JournalReader, run_id: str, *, wait: float = 30.0) -> RunStarted:
    """SIGTERM the supervisor of ``run_id`` and wait up to ``wait`` s until the run ended.

    Returns the session that was stopped. Raises JournalError when the run is not running
    (naming its status), when its process is not the journalled one (its pid was reused),
    or when it did not end within ``wait`` seconds.
    """
    session = journal.supervisor(run_id)
    if session is None:
        status = next((r.status for r in journal.runs() if r.run_id == run_id), "unknown")
        raise JournalError(
            f"run {run_id} is not running (it is {status}): there is nothing to cancel"
        )
    try:
        proc = psutil.Process(session.pid)
        if abs(proc.create_time() - session.pid_started) >= 0.01:
            raise psutil.NoSuchProcess(session.pid)
        proc.send_signal(signal.SIGTERM)  # psutil checks again that the pid was not reused
    except psutil.NoSuchProcess:
        raise JournalError(f"run {run_id}: its supervisor (pid {session.pid}) is gone") from None
    except psutil.AccessDenied:
        raise JournalError(
            f"run {run_id}: not allowed to signal its supervisor (pid {session.pid})"
        ) from None
    deadline = time.monotonic() + wait
    while journal.supervisor(run_id) is not None:
        if time.monotonic() > deadline:
            raise JournalError(
                f"run {run_id} did not stop within {wait:g} s (supervisor pid {session.pid})"
            )
        time.sleep(0.05)
    return session
