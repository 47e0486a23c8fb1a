"""Step logs, the supervisor's side: make a run's logs folder, read and follow its logs.

Step processes write the logs (:mod:`mcpp.actors.capture`); :mod:`mcpp.steplog` has the layout
and the line format. :func:`open_run_logs` makes ``runs/RUN_ID/logs/`` (0700) under the home
folder when a run starts and keeps its ``run.json`` (which steps the run has, when it was
created, which supervisor runs it, when it ended). :func:`read_logs` and :func:`follow_logs`
read; they never create a file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

import msgspec

from mcpp import steplog
from mcpp.errors import MCPPError
from mcpp.home import PRIVATE_FILE, RunIdError, mcpp_home, private_folder, resolve_run_id

__all__ = [
    "LogLine",
    "LogTail",
    "LogsError",
    "follow_logs",
    "log_cap",
    "logs_folder",
    "open_run_logs",
    "read_logs",
    "run_active",
    "run_steps",
]

POLL = 0.1  # seconds between looks at a followed run's files


class LogsError(MCPPError, LookupError):
    """A step named for its logs is not a step of the run."""


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a step attempt's output.

    ``stream`` is where it was written: ``stdout`` (descriptor 1), ``stderr`` (descriptor 2) or
    ``log`` (a ``logging`` record, with its ``level``). ``text`` has no line break. ``at`` is
    when mcpp read it (seconds since the epoch).
    """

    step: str
    attempt: int
    stream: Literal["stdout", "stderr", "log"]
    text: str
    level: str | None = None
    at: float = 0.0


class RunInfo(msgspec.Struct, kw_only=True):
    """``logs/run.json``."""

    run_id: str
    workflow: str
    steps: list[str]
    created_at: float
    pid: int | None = None
    pid_started: float | None = None
    ended_at: float | None = None


def log_cap() -> int | None:
    """The cap of each attempt's log from ``$MCPP_LOG_CAP`` (``None``: the default, 50 MiB).

    Raises MCPPError for a value that is not a size.
    """
    text = os.environ.get(steplog.CAP_ENV, "").strip()
    return steplog.parse_cap(text) if text else None


def logs_folder(run_id: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The absolute logs folder of run ``run_id`` (not created)."""
    return mcpp_home(home).absolute() / "runs" / run_id / "logs"


def _write_info(folder: Path, info: RunInfo) -> None:
    """Replace ``run.json`` at once (a reader sees the old file or the new one)."""
    temporary = folder / f".{steplog.RUN_FILE}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    with open(fd, "wb") as file:
        file.write(msgspec.json.encode(info))
    os.replace(temporary, folder / steplog.RUN_FILE)


def _read_info(folder: Path) -> RunInfo | None:
    try:
        return msgspec.json.decode((folder / steplog.RUN_FILE).read_bytes(), type=RunInfo)
    except (OSError, msgspec.DecodeError):
        return None


def _started(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


@contextmanager
def open_run_logs(
    run_id: str, workflow: str, steps: list[str], home: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Make the logs folder of run ``run_id`` (0700, with its parents) and its ``run.json``
    naming this process as the run's supervisor; yield the folder (absolute). On exit, however
    the block ends, ``run.json`` records the end. A run resumed keeps its ``created_at``.

    Raises MCPPError when the folder cannot be made.
    """
    folder = logs_folder(run_id, home)
    try:
        private_folder(folder)
        previous = _read_info(folder)
        info = RunInfo(
            run_id=run_id,
            workflow=workflow,
            steps=steps,
            created_at=previous.created_at if previous is not None else time.time(),
            pid=os.getpid(),
            pid_started=_started(os.getpid()),
        )
        _write_info(folder, info)
    except OSError as exc:
        raise MCPPError(f"cannot make the logs folder {folder}: {exc.strerror or exc}") from None
    try:
        yield folder
    finally:
        info.ended_at = time.time()
        with suppress(OSError):
            _write_info(folder, info)


def known_runs(home: str | os.PathLike[str] | None = None) -> list[tuple[str, float]]:
    """``(run_id, created_at)`` of every run folder under the home folder."""
    runs = mcpp_home(home).absolute() / "runs"
    found = []
    with suppress(OSError):
        for entry in os.scandir(runs):
            if entry.is_dir():
                info = _read_info(Path(entry.path) / "logs")
                created = info.created_at if info is not None else entry.stat().st_mtime
                found.append((entry.name, created))
    return found


def find_run(text: str, home: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """The run ``text`` names (a whole id, a unique prefix or ``last``) and its logs folder.

    Raises RunIdError saying where it looked.
    """
    runs = mcpp_home(home).absolute() / "runs"
    try:
        run_id = resolve_run_id(text, known_runs(home))
    except RunIdError as exc:
        raise RunIdError(f"{exc} (looked in {runs})") from None
    return run_id, runs / run_id / "logs"


def _steps(folder: Path) -> list[str]:
    """The run's steps: from ``run.json``, else the step folders there are."""
    info = _read_info(folder)
    if info is not None:
        return list(info.steps)
    with suppress(OSError):
        return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    return []


def run_steps(run_id: str, home: str | os.PathLike[str] | None = None) -> list[str]:
    """The steps of run ``run_id`` (resolved as :func:`read_logs` does). Raises RunIdError."""
    return _steps(find_run(run_id, home)[1])


def attempts(folder: Path, step: str) -> list[int]:
    """The attempts of ``step`` that have a log, in order."""
    found = []
    with suppress(OSError):
        for entry in os.scandir(folder / step):
            stem, dot, suffix = entry.name.partition(".")
            if dot and suffix == "log" and stem.isdigit():
                found.append(int(stem))
    return sorted(found)


def _parse(step: str, attempt: int, data: bytes) -> list[LogLine]:
    lines = []
    for raw in data.split(b"\n"):
        parsed = steplog.parse_line(raw)
        if parsed is not None:
            at, stream, level, text = parsed
            lines.append(
                LogLine(step=step, attempt=attempt, stream=stream, text=text, level=level, at=at)  # type: ignore[arg-type]
            )
    return lines


def read_attempt(folder: Path, step: str, attempt: int, tail: int | None = None) -> list[LogLine]:
    """The lines of one attempt's log (the last ``tail`` of them); ``[]`` if it has none."""
    path = steplog.attempt_path(folder, step, attempt)
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            block = 64 * 1024
            while True:  # with a tail, read only as much of the end as it needs
                start = 0 if tail is None else max(0, size - block)
                file.seek(start)
                data = file.read(size - start)
                if start > 0:
                    data = data[data.find(b"\n") + 1 :]  # a line cut by the block's start
                lines = _parse(step, attempt, data)
                if tail is None or start == 0 or len(lines) > tail:
                    break
                block *= 4
    except OSError:
        return []
    return lines if tail is None else lines[-tail:] if tail > 0 else []


def _choose(folder: Path, step: str | None) -> list[str]:
    steps = _steps(folder)
    if step is None:
        return steps
    if step not in steps:
        shown = ", ".join(steps[:10]) + (", ..." if len(steps) > 10 else "")
        raise LogsError(f"run {folder.parent.name} has no step {step!r} (its steps: {shown})")
    return [step]


def read_logs(
    run_id: str,
    step: str | None = None,
    *,
    attempt: int | None = None,
    home: str | os.PathLike[str] | None = None,
    tail: int | None = None,
) -> list[LogLine]:
    """The logged output of a run: one step's, or every step's merged in time order.

    ``run_id`` is a whole run id, a unique prefix or ``last``, looked up in the run folders
    under ``home`` (default: :func:`mcpp.home.mcpp_home`). ``attempt`` picks that attempt of
    each step chosen; by default each step's latest attempt that wrote something. A step or
    attempt that wrote nothing gives no lines. ``tail`` keeps the last N lines of the result.

    Raises :class:`~mcpp.home.RunIdError` when ``run_id`` names no run or several (saying
    where it looked), :class:`LogsError` when ``step`` is not a step of the run. Reads only:
    creates nothing.
    """
    _run_id, folder = find_run(run_id, home)
    lines: list[LogLine] = []
    for name in _choose(folder, step):
        found = attempts(folder, name)
        number = attempt if attempt is not None else (found[-1] if found else None)
        if number is not None:
            lines.extend(read_attempt(folder, name, number, tail))
    if step is None:
        lines.sort(key=lambda line: line.at)  # stable: each attempt's own order is kept
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines


def run_active(folder: Path) -> bool:
    """True while the run of logs ``folder`` has a supervisor that has not recorded its end."""
    info = _read_info(folder)
    if info is None or info.ended_at is not None or info.pid is None:
        return False
    started = _started(info.pid)
    return started is not None and (info.pid_started is None or started == info.pid_started)


class LogTail:
    """New lines of a logs folder since the last :meth:`poll`: every step's, or ``step``'s.

    ``first`` per step is the lowest attempt read (older attempts are not shown); each
    file is read up to its last complete line.
    """

    def __init__(self, folder: Path, steps: list[str], first: dict[str, int] | None = None):
        self.folder = folder
        self.steps = steps
        self.first = first or {}
        self.offsets: dict[tuple[str, int], int] = {}

    def poll(self) -> list[LogLine]:
        """Every complete line written since the last call, in time order."""
        lines: list[LogLine] = []
        present = set()
        with suppress(OSError):  # one look at the folder, not one per step of a big run
            present = {entry.name for entry in os.scandir(self.folder) if entry.is_dir()}
        for step in self.steps:
            if step not in present:
                continue
            for attempt in attempts(self.folder, step):
                if attempt >= self.first.get(step, 0):
                    lines.extend(self._read(step, attempt))
        lines.sort(key=lambda line: line.at)
        return lines

    def _read(self, step: str, attempt: int) -> list[LogLine]:
        offset = self.offsets.get((step, attempt), 0)
        try:
            with open(steplog.attempt_path(self.folder, step, attempt), "rb") as file:
                file.seek(offset)
                data = file.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offsets[(step, attempt)] = offset + end
        return _parse(step, attempt, data[:end])


def follow_logs(
    run_id: str,
    step: str | None = None,
    *,
    attempt: int | None = None,
    home: str | os.PathLike[str] | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> Iterator[LogLine]:
    """Yield what :func:`read_logs` returns, then every new line as it is written, until the
    run ends (its supervisor recorded the end, or is gone); then the last lines.

    Later attempts (retries) are followed too. Raises like :func:`read_logs`.
    """
    _run_id, folder = find_run(run_id, home)
    chosen = _choose(folder, step)
    first = {}
    for name in chosen:
        found = attempts(folder, name)
        first[name] = attempt if attempt is not None else (found[-1] if found else 0)
    tail = LogTail(folder, chosen, first)
    while True:
        active = run_active(folder)
        for line in tail.poll():
            if attempt is None or line.attempt == attempt:
                yield line
        if not active:
            return
        wait(POLL)
