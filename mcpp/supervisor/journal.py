"""The run journal: an append-only SQLite record of every run, for ``status`` and ``resume``.

One database file, ``journal.db`` in ``$MCPP_HOME`` (or ``./.mcpp/`` when it is unset), holds
two tables::

    runs(run_id, workflow, source, spec, spec_hash, created_at)   one row per run, written first
    events(seq, run_id, at, kind, step, data)                     append-only, in order

``spec`` is the msgspec-encoded :class:`~mcpp.workflow.spec.WorkflowSpec` and ``spec_hash`` its
SHA-256.
Each event's ``data`` is a MessagePack-encoded record: the coordinator's own
:mod:`mcpp.protocol` events (a ``step_succeeded`` carries the step's result bytes as they
arrived) plus the journal's :class:`RunStarted` (one per supervisor session: the first run and
each resume) and :class:`RunEnded` (the final status, written after the run's last event).
Nothing is pickled.

Crash consistency: the database is in WAL mode and every write (the run row with its first
``RunStarted``; each batch of events) is one transaction, so a supervisor killed at any instant
(SIGKILL) leaves a journal that opens and reads back: every batch is there whole or not at all.
Writes are ``synchronous=NORMAL`` (no fsync per commit; safe against a process crash, not
against power loss). :class:`JournalWriter` buffers events in memory and writes them from a
worker thread every :data:`FLUSH_INTERVAL` seconds or :data:`FLUSH_EVENTS` events, so the
supervisor's event loop never waits on the disk per event. Events still buffered when the
supervisor is killed are lost: resume then runs those steps again (at-least-once execution).

A run's status is the ``RunEnded`` of its latest session; without one it is ``running`` while
that session's supervisor process lives, ``interrupted`` once it is gone.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, get_args

import msgspec
import psutil
import trio

from mcpp import protocol
from mcpp.errors import MCPPError
from mcpp.home import mcpp_home
from mcpp.supervisor.results import RunRecorder, RunResult, RunStatus, StepResult
from mcpp.workflow.spec import WorkflowSpec

__all__ = [
    "FLUSH_EVENTS",
    "FLUSH_INTERVAL",
    "Journal",
    "JournalError",
    "JournalRun",
    "JournalWriter",
    "RunEnded",
    "RunStarted",
    "RunSummary",
    "journal_path",
    "spec_hash",
]

FLUSH_INTERVAL: Final = 0.05
FLUSH_EVENTS: Final = 500
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    source TEXT,
    spec BLOB NOT NULL,
    spec_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run_kind ON events(run_id, kind);
"""


class JournalError(MCPPError):
    """The journal cannot be read or written, or names no such run."""


class RunStarted(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="run_started"):
    """A supervisor session of the run began (the first run, or a resume).

    ``pid`` and ``pid_started`` (its process create time) tell whether that supervisor still
    lives; ``completed`` lists the steps carried over from earlier sessions.
    """

    pid: int
    pid_started: float
    completed: tuple[str, ...] = ()


class RunEnded(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="run_ended"):
    """The session ended with the run result ``status`` after ``duration_s`` seconds."""

    status: str
    duration_s: float


_Record = (
    RunStarted
    | RunEnded
    | protocol.StepStarted
    | protocol.StepSucceeded
    | protocol.StepFailed
    | protocol.StepSkipped
    | protocol.StepCancelled
    | protocol.RunFinished
)
_RECORD_TYPES: Final = get_args(_Record)
_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(_Record)
_spec_decoder: Final = msgspec.msgpack.Decoder(WorkflowSpec)


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``status``: ``started_at`` is ISO 8601 (UTC, milliseconds)."""

    run_id: str
    workflow: str
    status: RunStatus
    started_at: str
    duration_s: float


class JournalRun(msgspec.Struct, kw_only=True):
    """Everything the journal knows about one run.

    ``completed`` maps each step that succeeded (in any session) to its encoded result;
    ``result`` is the run's result document as ``spawn --json`` printed it (or, for a run that
    did not end, as far as it got); ``running_pid`` is the pid of a live supervisor of it.
    """

    run_id: str
    spec: WorkflowSpec
    spec_hash: str
    source: str | None
    created_at: float
    completed: dict[str, bytes]
    result: RunResult
    running_pid: int | None


def journal_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The journal file: ``home``, else ``$MCPP_HOME``, else ``./.mcpp``, plus ``journal.db``."""
    return mcpp_home(home) / "journal.db"


def spec_hash(spec: WorkflowSpec) -> str:
    """The SHA-256 (hex) of ``spec``'s MessagePack encoding."""
    return hashlib.sha256(_encoder.encode(spec)).hexdigest()


def _process_started(pid: int) -> float:
    return psutil.Process(pid).create_time()


def _alive(pid: int, started: float) -> bool:
    """True if process ``pid`` created at ``started`` still runs (zombies are dead)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds")


class Journal:
    """A connection to a journal database (created if missing).

    Safe to use from one thread at a time (the :class:`JournalWriter` hands it to a worker
    thread and waits). Several processes may share one file: SQLite serialises their writes.
    Raises JournalError when the file cannot be opened or is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            if self._schema_version() == 0:
                with self._transaction():
                    if self._schema_version() == 0:
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                self.db.execute(statement)
                        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if (version := self._schema_version()) != SCHEMA_VERSION:
                self.db.close()
                raise JournalError(f"{self.path}: journal schema {version} is not supported")
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from None

    def _schema_version(self) -> int:
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        return version

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Journal:
        """Open the journal of ``home`` (see :func:`journal_path`)."""
        return cls(journal_path(home))

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _insert(self, run_id: str, records: Iterable[tuple[float, Any]]) -> None:
        rows = []
        for at, record in records:
            kind = type(record).__struct_config__.tag
            rows.append((run_id, at, kind, getattr(record, "step", None), _encoder.encode(record)))
        self.db.executemany(
            "INSERT INTO events (run_id, at, kind, step, data) VALUES (?, ?, ?, ?, ?)", rows
        )

    @staticmethod
    def _session(completed: Iterable[str] = ()) -> RunStarted:
        pid = os.getpid()
        return RunStarted(pid=pid, pid_started=_process_started(pid), completed=tuple(completed))

    def begin_run(self, run_id: str, spec: WorkflowSpec, *, source: str | None = None) -> None:
        """Record a new run: its row (spec and hash) and its first RunStarted, in one transaction.

        ``source`` is the workflow file (stored as an absolute path). Raises JournalError if
        ``run_id`` is already journalled or the write fails.
        """
        encoded = _encoder.encode(spec)
        source = os.path.abspath(source) if source else None
        try:
            with self._transaction():
                self.db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, spec.name, source, encoded, spec_hash(spec), time.time()),
                )
                self._insert(run_id, [(time.time(), self._session())])
        except sqlite3.Error as exc:
            raise JournalError(f"cannot journal run {run_id}: {exc}") from None

    def begin_resume(self, run_id: str, completed: Iterable[str]) -> None:
        """Record a new session of ``run_id`` (a resume) that carries over ``completed``.

        The check that no supervisor still runs it and the write are one transaction, so two
        resumes cannot both start. Raises JournalError for an unknown run or one still running.
        """
        try:
            with self._transaction():
                row = self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is None:
                    raise JournalError(f"no run {run_id!r} in the journal {self.path}")
                pid = self._running_pid(run_id)
                if pid is not None:
                    raise JournalError(f"run {run_id} is still running (supervisor pid {pid})")
                self._insert(run_id, [(time.time(), self._session(completed))])
        except sqlite3.Error as exc:
            raise JournalError(f"cannot journal run {run_id}: {exc}") from None

    def append(self, run_id: str, records: Iterable[tuple[float, Any]]) -> None:
        """Append ``(time, record)`` pairs to ``run_id``'s events in one transaction.

        Only journal records are kept (step events, RunFinished, RunStarted, RunEnded); others
        (heartbeats) are dropped. Raises JournalError if the write fails (nothing is written).
        """
        kept = [(at, rec) for at, rec in records if isinstance(rec, _RECORD_TYPES)]
        if not kept:
            return
        try:
            with self._transaction():
                self._insert(run_id, kept)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot journal run {run_id}: {exc}") from None

    def _last_session(self, run_id: str) -> tuple[str, float, Any] | None:
        row = self.db.execute(
            "SELECT kind, at, data FROM events WHERE run_id = ? AND kind IN "
            "('run_started', 'run_ended') ORDER BY seq DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], _decoder.decode(row[2]))

    def _running_pid(self, run_id: str) -> int | None:
        last = self._last_session(run_id)
        if last is None or not isinstance(last[2], RunStarted):
            return None
        started: RunStarted = last[2]
        return started.pid if _alive(started.pid, started.pid_started) else None

    def runs(self) -> list[RunSummary]:
        """Every journalled run, newest first.

        ``duration_s`` is the final document's for an ended run, else the time from the
        latest session's start to its latest event. Raises JournalError if reading fails.
        """
        try:
            rows = self.db.execute(
                "SELECT run_id, workflow, created_at FROM runs"
                " ORDER BY created_at DESC, run_id DESC"
            ).fetchall()
            return [self._summary(run_id, name, created) for run_id, name, created in rows]
        except (sqlite3.Error, msgspec.DecodeError) as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from None

    def _summary(self, run_id: str, workflow: str, created_at: float) -> RunSummary:
        last = self._last_session(run_id)
        status: RunStatus
        if last is not None and isinstance(last[2], RunEnded):
            status, duration = last[2].status, last[2].duration_s  # type: ignore[assignment]
        else:
            begun = last[1] if last is not None else created_at
            latest = self.db.execute(
                "SELECT max(at) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            duration = max(0.0, (latest or begun) - begun)
            status = "running" if self._running_pid(run_id) is not None else "interrupted"
        return RunSummary(
            run_id=run_id,
            workflow=workflow,
            status=status,
            started_at=_iso(created_at),
            duration_s=round(duration, 6),
        )

    def load(self, run_id: str) -> JournalRun:
        """Read back ``run_id``: its spec, the results of its succeeded steps, its document.

        The document is rebuilt by replaying the events through a
        :class:`~mcpp.supervisor.results.RunRecorder`; each new session resets the steps that had
        not
        succeeded. For a run that did not end, steps that were running show ``cancelled`` with
        an ``Interrupted`` error once its supervisor is gone. Raises JournalError for an unknown
        run, a spec whose hash does not match, or unreadable records.
        """
        try:
            row = self.db.execute(
                "SELECT spec, spec_hash, source, created_at FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise JournalError(f"no run {run_id!r} in the journal {self.path}")
            spec = _spec_decoder.decode(row[0])
            if spec_hash(spec) != row[1]:
                raise JournalError(f"run {run_id}: the journalled spec does not match its hash")
            events = self.db.execute(
                "SELECT at, data FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            running_pid = self._running_pid(run_id)
            result = _replay(run_id, spec, [(at, _decoder.decode(data)) for at, data in events])
        except (sqlite3.Error, msgspec.DecodeError, KeyError) as exc:
            raise JournalError(f"cannot read run {run_id} from {self.path}: {exc!r}") from None
        recorder, ended = result
        if ended is None and running_pid is None:
            recorder.cancel_unfinished(interrupted=True)
        document = recorder.result(_document_status(recorder, ended, running_pid))
        if ended is not None:
            document.duration_s = ended.duration_s
        return JournalRun(
            run_id=run_id,
            spec=spec,
            spec_hash=row[1],
            source=row[2],
            created_at=row[3],
            completed=dict(recorder.raw_results),
            result=document,
            running_pid=running_pid,
        )


def _replay(
    run_id: str, spec: WorkflowSpec, records: list[tuple[float, Any]]
) -> tuple[RunRecorder, RunEnded | None]:
    """Fold journal records into a recorder; return it and the last session's RunEnded."""
    recorder = RunRecorder(run_id, spec)
    ended: RunEnded | None = None
    begun = last = records[0][0] if records else time.time()
    for at, record in records:
        last = at
        match record:
            case RunStarted():
                ended, begun = None, at
                for step_id, step in list(recorder.steps.items()):
                    if step.status != "succeeded":
                        recorder.steps[step_id] = StepResult()
            case RunEnded():
                ended = record
                if record.status == "cancelled":
                    recorder.cancel_unfinished()
            case _:
                recorder.apply(record)
    # The document's duration is the latest session's, measured on the wall clock here.
    recorder.started, recorder.finished = 0.0, last - begun
    return recorder, ended


def _document_status(
    recorder: RunRecorder, ended: RunEnded | None, running_pid: int | None
) -> RunStatus:
    if ended is not None:
        return ended.status  # type: ignore[return-value]
    return "running" if running_pid is not None else "interrupted"


class JournalWriter:
    """Buffer one run's events in memory and write them in batches from a worker thread.

    :meth:`record` (cheap, synchronous: call it from the event hook) appends to the buffer;
    :meth:`run` (a trio task) writes the buffer every ``interval`` seconds, or as soon as it
    holds ``max_events``; :meth:`close` writes what is left plus an optional final record.
    Raises JournalError from :meth:`run` or :meth:`close` if a write fails.
    """

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        *,
        interval: float = FLUSH_INTERVAL,
        max_events: int = FLUSH_EVENTS,
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.interval = interval
        self.max_events = max_events
        self.pending: list[tuple[float, Any]] = []
        self.wake = trio.Event()
        self.batches = 0
        self.written = 0

    def record(self, event: Any) -> None:
        """Buffer ``event`` (a coordinator event) with the current time; never blocks."""
        self.pending.append((time.time(), event))
        if len(self.pending) >= self.max_events:
            self.wake.set()

    def _write(self, batch: list[tuple[float, Any]]) -> None:
        self.journal.append(self.run_id, batch)
        self.batches += 1
        self.written += len(batch)

    async def run(self) -> None:
        """Write the buffer in batches until cancelled (a write in progress completes)."""
        while True:
            with trio.move_on_after(self.interval):
                await self.wake.wait()
            if self.wake.is_set():
                self.wake = trio.Event()
            batch, self.pending = self.pending, []
            if batch:
                await trio.to_thread.run_sync(self._write, batch)

    def close(self, final: Any = None) -> None:
        """Write the remaining events, and ``final`` after them, in one transaction."""
        batch, self.pending = self.pending, []
        if final is not None:
            batch.append((time.time(), final))
        if batch:
            self._write(batch)
