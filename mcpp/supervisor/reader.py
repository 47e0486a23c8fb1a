"""Reading the run journal (see :mod:`mcpp.supervisor.journal` for what it holds).

:class:`JournalReader` is a connection that only reads: ``status``, ``runs ls`` and ``cancel``
use :meth:`JournalReader.open_readonly`, which opens the file read-only
(``file:...?mode=ro``) and creates nothing when there is none.
:class:`~mcpp.supervisor.journal.Journal` is the reader that also writes. Runs are read back
by replaying their records (:func:`mcpp.supervisor.replay.replay`), large results from their
files (:mod:`mcpp.supervisor.blobs`, hash verified).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Final, Self

import msgspec
import psutil

from mcpp.errors import MCPPError
from mcpp.home import RunIdError, mcpp_home, resolve_run_id, run_folder
from mcpp.protocol import StepSucceeded
from mcpp.sqlitedb import SchemaError, open_database, open_readonly
from mcpp.supervisor import blobs
from mcpp.supervisor.replay import (
    JournalRun,
    RunStarted,
    RunSummary,
    decode_record,
    iso,
    replay,
    spec_hash,
)
from mcpp.supervisor.results import RunStatus
from mcpp.workflow.spec import WorkflowSpec

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "JournalError", "JournalReader", "journal_path"]

SCHEMA_VERSION: Final = 2
BUSY_TIMEOUT: Final = 10.0

SCHEMA: Final = (
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
MIGRATIONS: Final = {1: ("ALTER TABLE events ADD COLUMN blob TEXT",)}


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


def open_journal_database(path: Path) -> sqlite3.Connection:
    """Open or create the journal file ``path`` for writing (migrated to the current schema).

    Raises SchemaError, ``sqlite3.Error`` or OSError (:class:`Journal` turns them into
    JournalError).
    """
    return open_database(
        path,
        schema=SCHEMA,
        version=SCHEMA_VERSION,
        busy_timeout=BUSY_TIMEOUT,
        migrations=MIGRATIONS,
    )


class JournalReader:
    """A connection to a journal database that reads (see :class:`Journal` to write).

    Safe to use from one thread at a time. Raises JournalError when the file cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str], db: sqlite3.Connection) -> None:
        self.path = Path(path)
        self.db = db

    @classmethod
    def open_readonly(cls, home: str | os.PathLike[str] | None = None) -> JournalReader | None:
        """Open the journal of ``home`` read-only; ``None`` when there is none (nothing is
        created). A journal of an older schema is migrated first (that writes it).
        Raises JournalError when the file is not a journal of a known schema."""
        path = journal_path(home)
        try:
            try:
                db = open_readonly(path, version=SCHEMA_VERSION, busy_timeout=BUSY_TIMEOUT)
            except SchemaError as exc:
                if exc.version not in MIGRATIONS:
                    raise
                open_journal_database(path).close()
                db = open_readonly(path, version=SCHEMA_VERSION, busy_timeout=BUSY_TIMEOUT)
        except SchemaError as exc:
            raise JournalError(f"{path}: journal schema {exc.version} is not supported") from None
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None
        return None if db is None else JournalReader(path, db)

    @property
    def home(self) -> Path:
        """The folder of the journal file, which holds the runs' folders too."""
        return self.path.parent

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            raise RunIdError(f"{exc} in the journal {self.path.absolute()}") from None

    def runs(self) -> list[RunSummary]:
        """Every journalled run, newest first.

        ``duration_s`` is the total over the run's sessions (for a session that did not end,
        up to now while it runs, else up to its latest event). Raises JournalError if reading
        fails.
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
        running = self._running_pid(run_id) is not None
        if records and isinstance(records[-1][1], RunStarted):
            # The open session lasts until now while it runs, else until its last event.
            records.append((time.time() if running else latest or records[-1][0], None))
        done = replay(run_id, WorkflowSpec(name=workflow, steps=()), records)
        status: RunStatus
        if done.ended is not None:
            status = done.ended.status  # type: ignore[assignment]
        else:
            status = "running" if running else "interrupted"
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
            files: dict[str, str | None] = {}  # each step's last result: its stored file
            folder = blobs.results_folder(run_folder(run_id, self.home))
            for (_at, record), (_, _, digest) in zip(records, events, strict=True):
                if isinstance(record, StepSucceeded):
                    files[record.step] = None if digest is None else str(folder / digest)
            running_pid = self._running_pid(run_id)
            if running_pid is not None:
                records.append((time.time(), None))  # a running session lasts until now
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
            completed=(completed := done.completed()),
            stored={s: f for s, f in files.items() if f is not None and s in completed},
            result=done.document(status),
            running_pid=running_pid,
            functions=done.functions,
        )
