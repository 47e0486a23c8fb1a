"""The run journal: an append-only SQLite record of every run, for ``status`` and ``resume``.

One database file, ``journal.db`` in ``$MCPP_HOME`` (or ``./.mcpp/`` when it is unset), holds
two tables::

    runs(run_id, workflow, source, spec, spec_hash, created_at)   one row per run, written first
    events(seq, run_id, at, kind, step, data, blob)               append-only, in order

``spec`` is the msgspec-encoded :class:`~mcpp.workflow.spec.WorkflowSpec` of the run's latest
session and ``spec_hash`` its SHA-256. Each event's ``data`` is a MessagePack-encoded record
(:mod:`mcpp.supervisor.replay`): the coordinator's own :mod:`mcpp.protocol` events plus the
journal's ``RunStarted`` (one per supervisor session) and ``RunEnded``. A ``step_succeeded``
carries the step's result bytes as they arrived, or, for a result over
:data:`~mcpp.supervisor.blobs.BLOB_THRESHOLD` bytes, only its SHA-256 in ``blob``: the bytes
are a file under the run's folder (:mod:`mcpp.supervisor.blobs`). Nothing is pickled.

Crash consistency: the file is set up by :mod:`mcpp.sqlitedb` (private 0600, WAL,
``synchronous=NORMAL``) and every write (the run row with its first ``RunStarted``; each batch
of events) is one transaction, so a supervisor killed at any instant (SIGKILL) leaves a
journal that opens and reads back: every batch is there whole or not at all. A result's file
is complete under its name before the row that names it commits.

A run's status is the ``RunEnded`` of its latest session; without one it is ``running`` while
that session's supervisor process lives, ``interrupted`` once it is gone. Read-only commands
use :meth:`Journal.open_readonly`, which creates nothing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import msgspec
import psutil

from mcpp import protocol
from mcpp.errors import MCPPError
from mcpp.home import RunIdError, mcpp_home, resolve_run_id, run_folder
from mcpp.sqlitedb import SchemaError, open_database, open_readonly, reclaim, transaction
from mcpp.supervisor import blobs
from mcpp.supervisor.replay import (
    RECORD_TYPES,
    JournalRun,
    RunEnded,
    RunStarted,
    RunSummary,
    decode_record,
    encode_record,
    iso,
    replay,
    spec_hash,
)
from mcpp.supervisor.results import RunStatus
from mcpp.supervisor.writer import FLUSH_EVENTS, FLUSH_INTERVAL, JournalWriter
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

SCHEMA_VERSION: Final = 2
BUSY_TIMEOUT: Final = 10.0

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        source TEXT,
        spec BLOB NOT NULL,
        spec_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        step TEXT,
        data BLOB NOT NULL,
        blob TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_run_kind ON events(run_id, kind)",
)
_MIGRATIONS: Final = {1: ("ALTER TABLE events ADD COLUMN blob TEXT",)}
_NO_RESULT: Final = msgspec.Raw(b"\xc0")  # what a row holds in place of a result in a file


class JournalError(MCPPError):
    """The journal cannot be read or written, or names no such run."""


def journal_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The journal file: ``home``, else ``$MCPP_HOME``, else ``./.mcpp``, plus ``journal.db``."""
    return mcpp_home(home) / "journal.db"


def _alive(pid: int, started: float) -> bool:
    """True if process ``pid`` created at ``started`` still runs (zombies are dead)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Journal:
    """A connection to a journal database (created, private, if missing).

    Safe to use from one thread at a time (the :class:`JournalWriter` hands it to a worker
    thread and waits). Several processes may share one file: SQLite serialises their writes.
    Raises JournalError when the file cannot be opened or is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str], *, db: sqlite3.Connection | None = None):
        self.path = Path(path)
        self.readonly = db is not None
        if db is not None:
            self.db = db
            return
        try:
            self.db = open_database(
                self.path,
                schema=_SCHEMA,
                version=SCHEMA_VERSION,
                busy_timeout=BUSY_TIMEOUT,
                migrations=_MIGRATIONS,
            )
        except SchemaError as exc:
            raise JournalError(
                f"{self.path}: journal schema {exc.version} is not supported"
            ) from None
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from None

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Journal:
        """Open the journal of ``home`` (see :func:`journal_path`), creating it if missing."""
        return cls(journal_path(home))

    @classmethod
    def open_readonly(cls, home: str | os.PathLike[str] | None = None) -> Journal | None:
        """Open the journal of ``home`` read-only; ``None`` when there is none (nothing is
        created). Writing through it raises JournalError. Raises JournalError as ``open``."""
        path = journal_path(home)
        try:
            db = open_readonly(path, version=SCHEMA_VERSION, busy_timeout=BUSY_TIMEOUT)
        except SchemaError as exc:
            if exc.version in _MIGRATIONS:  # an older journal: migrate it, then read
                return cls(path)
            raise JournalError(f"{path}: journal schema {exc.version} is not supported") from None
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None
        return None if db is None else cls(path, db=db)

    @property
    def home(self) -> Path:
        """The folder of the journal file, which holds the runs' folders too."""
        return self.path.parent

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------

    def _rows(self, run_id: str, records: Iterable[tuple[float, Any]]) -> list[tuple[Any, ...]]:
        """The event rows of ``records``; large results go to their files first."""
        rows = []
        for at, record in records:
            digest = None
            if (
                isinstance(record, protocol.StepSucceeded)
                and len(record.result) > blobs.BLOB_THRESHOLD
            ):
                digest = blobs.store(run_folder(run_id, self.home), bytes(record.result))
                record = msgspec.structs.replace(record, result=_NO_RESULT)
            kind = type(record).__struct_config__.tag
            step = getattr(record, "step", None)
            rows.append((run_id, at, kind, step, encode_record(record), digest))
        return rows

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        self.db.executemany(
            "INSERT INTO events (run_id, at, kind, step, data, blob) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    @staticmethod
    def _session(
        completed: Iterable[str] = (),
        functions: dict[str, str] | None = None,
        rerun: dict[str, str] | None = None,
    ) -> RunStarted:
        pid = os.getpid()
        return RunStarted(
            pid=pid,
            pid_started=psutil.Process(pid).create_time(),
            completed=tuple(completed),
            functions=dict(functions or {}),
            rerun=dict(rerun or {}),
        )

    def begin_run(
        self,
        run_id: str,
        spec: WorkflowSpec,
        *,
        source: str | None = None,
        functions: dict[str, str] | None = None,
    ) -> None:
        """Record a new run: its row (spec and hash) and its first RunStarted, in one transaction.

        ``source`` is the workflow file (stored as an absolute path); ``functions`` maps steps
        to their function hashes. Raises JournalError if ``run_id`` is already journalled or
        the write fails.
        """
        source = os.path.abspath(source) if source else None
        session = self._session(functions=functions)
        try:
            with transaction(self.db):
                self.db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, spec.name, source, encode_record(spec), spec_hash(spec), time.time()),
                )
                self._insert(self._rows(run_id, [(time.time(), session)]))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot journal run {run_id}: {exc}") from None

    def begin_resume(
        self,
        run_id: str,
        completed: Iterable[str],
        *,
        spec: WorkflowSpec | None = None,
        functions: dict[str, str] | None = None,
        rerun: dict[str, str] | None = None,
    ) -> None:
        """Record a new session of ``run_id`` (a resume) that carries over ``completed``.

        ``spec`` (the workflow as it is now) replaces the run's spec; ``functions`` and
        ``rerun`` go in the session's RunStarted. The check that no supervisor still runs it
        and the writes are one transaction, so two resumes cannot both start. Raises
        JournalError for an unknown run or one still running.
        """
        session = self._session(completed, functions, rerun)
        try:
            with transaction(self.db):
                row = self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is None:
                    raise JournalError(f"no run {run_id!r} in the journal {self.path}")
                pid = self._running_pid(run_id)
                if pid is not None:
                    raise JournalError(f"run {run_id} is still running (supervisor pid {pid})")
                if spec is not None:
                    self.db.execute(
                        "UPDATE runs SET spec = ?, spec_hash = ? WHERE run_id = ?",
                        (encode_record(spec), spec_hash(spec), run_id),
                    )
                self._insert(self._rows(run_id, [(time.time(), session)]))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot journal run {run_id}: {exc}") from None

    def append(self, run_id: str, records: Iterable[tuple[float, Any]]) -> None:
        """Append ``(time, record)`` pairs to ``run_id``'s events in one transaction.

        Only journal records are kept (step events, RunFinished, RunStarted, RunEnded); others
        (heartbeats) are dropped. Results over the threshold are written to their files first.
        Raises JournalError if a write fails (no row is written).
        """
        kept = [(at, rec) for at, rec in records if isinstance(rec, RECORD_TYPES)]
        if not kept:
            return
        try:
            rows = self._rows(run_id, kept)
            with transaction(self.db):
                self._insert(rows)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot journal run {run_id}: {exc}") from None

    # --- reading -------------------------------------------------------------------------

    def _last_session(self, run_id: str) -> tuple[float, Any] | None:
        row = self.db.execute(
            "SELECT at, data FROM events WHERE run_id = ? AND kind IN "
            "('run_started', 'run_ended') ORDER BY seq DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else (row[0], decode_record(row[1]))

    def supervisor(self, run_id: str) -> RunStarted | None:
        """The session of ``run_id`` whose supervisor process still runs it, if any."""
        last = self._last_session(run_id)
        if last is None or not isinstance(last[1], RunStarted):
            return None
        started: RunStarted = last[1]
        return started if _alive(started.pid, started.pid_started) else None

    def _running_pid(self, run_id: str) -> int | None:
        session = self.supervisor(run_id)
        return None if session is None else session.pid

    def run_ids(self) -> list[tuple[str, float]]:
        """Every run's ``(run_id, created_at)``, newest first."""
        try:
            rows = self.db.execute(
                "SELECT run_id, created_at FROM runs ORDER BY created_at DESC, run_id DESC"
            ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from None
        return [(run_id, created) for run_id, created in rows]

    def resolve(self, text: str) -> str:
        """The run ``text`` names: a whole id, a unique prefix, or ``last`` (the newest).

        Raises RunIdError (naming this journal) when it names none or several.
        """
        try:
            return resolve_run_id(text, self.run_ids())
        except RunIdError as exc:
            raise RunIdError(f"{exc} in the journal {self.path}") from None

    def runs(self) -> list[RunSummary]:
        """Every journalled run, newest first.

        ``duration_s`` is the total over the run's sessions (for a session that did not end,
        up to its latest event). Raises JournalError if reading fails.
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
        sessions = self.db.execute(
            "SELECT at, data FROM events WHERE run_id = ? AND kind IN "
            "('run_started', 'run_ended') ORDER BY seq",
            (run_id,),
        ).fetchall()
        latest = self.db.execute(
            "SELECT max(at) FROM events WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        records = [(at, decode_record(data)) for at, data in sessions]
        if records and isinstance(records[-1][1], RunStarted):
            records.append((latest or records[-1][0], None))  # the open session's last event
        done = replay(run_id, WorkflowSpec(name=workflow, steps=()), records)
        status: RunStatus
        if done.ended is not None:
            status = done.ended.status  # type: ignore[assignment]
        else:
            status = "running" if self._running_pid(run_id) is not None else "interrupted"
        return RunSummary(
            run_id=run_id,
            workflow=workflow,
            status=status,
            started_at=iso(created_at),
            duration_s=round(done.duration_s, 6),
        )

    def _record(self, run_id: str, data: bytes, digest: str | None) -> Any:
        record = decode_record(data)
        if digest is not None:
            raw = blobs.load(run_folder(run_id, self.home), digest)
            record = msgspec.structs.replace(record, result=msgspec.Raw(raw))
        return record

    def load(self, run_id: str) -> JournalRun:
        """Read back ``run_id``: its spec, the results of its succeeded steps, its document.

        The document is rebuilt by :func:`~mcpp.supervisor.replay.replay`: each new session
        resets the steps it did not carry over (keeping their history). For a run that did
        not end, steps that were running show ``cancelled`` with an ``Interrupted`` error once
        its supervisor is gone. Raises JournalError for an unknown run, a spec whose hash does
        not match, unreadable records, or a result file that is missing or altered.
        """
        try:
            row = self.db.execute(
                "SELECT spec, spec_hash, source, created_at FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise JournalError(f"no run {run_id!r} in the journal {self.path}")
            spec = msgspec.msgpack.decode(row[0], type=WorkflowSpec)
            if spec_hash(spec) != row[1]:
                raise JournalError(f"run {run_id}: the journalled spec does not match its hash")
            events = self.db.execute(
                "SELECT at, data, blob FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            records = [(at, self._record(run_id, data, digest)) for at, data, digest in events]
            running_pid = self._running_pid(run_id)
        except blobs.BlobError as exc:
            raise JournalError(f"cannot read run {run_id}: {exc}") from None
        except (sqlite3.Error, msgspec.DecodeError, KeyError) as exc:
            raise JournalError(f"cannot read run {run_id} from {self.path}: {exc!r}") from None
        done = replay(run_id, spec, records)
        if done.ended is None and running_pid is None:
            done.recorder.cancel_unfinished(interrupted=True)
        status: RunStatus
        if done.ended is not None:
            status = done.ended.status  # type: ignore[assignment]
        else:
            status = "running" if running_pid is not None else "interrupted"
        return JournalRun(
            run_id=run_id,
            spec=spec,
            spec_hash=row[1],
            source=row[2],
            created_at=row[3],
            completed=done.completed(),
            result=done.document(status),
            running_pid=running_pid,
            functions=done.functions,
        )

    # --- removing ------------------------------------------------------------------------

    def delete(self, run_ids: Iterable[str], *, reclaim_space: bool = True) -> list[str]:
        """Remove runs: their rows, then their folders (logs, result files); return the ids.

        With ``reclaim_space`` the freed pages go back to the file system (VACUUM); without,
        SQLite reuses them for later runs. Runs still running are not removed: raises
        JournalError naming them (nothing is removed then), or when a write fails.
        """
        ids = list(dict.fromkeys(run_ids))
        try:
            with transaction(self.db):
                running = [r for r in ids if self._running_pid(r) is not None]
                if running:
                    raise JournalError(
                        f"run {', '.join(running)} is still running: stop it first "
                        "(mcpp cancel RUN_ID)"
                    )
                for run_id in ids:
                    self.db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                    self.db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            for run_id in ids:
                shutil.rmtree(run_folder(run_id, self.home), ignore_errors=True)
            if reclaim_space and ids:
                reclaim(self.db)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot remove runs from {self.path}: {exc}") from None
        return ids

    def prune(
        self,
        *,
        older_than: float | None = None,
        keep: int | None = None,
        now: float | None = None,
        reclaim_space: bool = True,
    ) -> list[str]:
        """Remove the runs that are not running and are older than ``older_than`` seconds,
        or are not among the ``keep`` newest runs; return their ids (see :meth:`delete`)."""
        now = time.time() if now is None else now
        chosen = []
        for index, (run_id, created) in enumerate(self.run_ids()):
            old = older_than is not None and created < now - older_than
            beyond = keep is not None and index >= keep
            if (old or beyond) and self._running_pid(run_id) is None:
                chosen.append(run_id)
        return self.delete(chosen, reclaim_space=reclaim_space) if chosen else []
