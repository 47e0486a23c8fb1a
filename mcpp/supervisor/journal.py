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

Runs that were never journalled (``--no-journal``, the Python API's default) have only a run
folder (their step logs); :meth:`Journal.delete` and :meth:`Journal.prune` remove those too.

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
from mcpp.home import RunIdError, resolve_run_id, run_folder
from mcpp.sqlitedb import SchemaError, reclaim, transaction
from mcpp.supervisor import blobs
from mcpp.supervisor.reader import (
    JournalError,
    JournalReader,
    journal_path,
    open_journal_database,
)
from mcpp.supervisor.replay import (
    RECORD_TYPES,
    JournalRun,
    RunEnded,
    RunStarted,
    RunSummary,
    encode_record,
    spec_hash,
)
from mcpp.workflow.spec import WorkflowSpec

__all__ = [
    "Journal",
    "JournalError",
    "JournalReader",
    "JournalRun",
    "RunEnded",
    "RunStarted",
    "RunSummary",
    "journal_path",
    "spec_hash",
]

_NO_RESULT: Final = msgspec.Raw(b"\xc0")  # what a row holds in place of a result in a file


class Journal(JournalReader):
    """A journal database that is read and written (created, private, if missing).

    Safe to use from one thread at a time (the :class:`~mcpp.supervisor.writer.JournalWriter`
    hands it to a worker thread and waits). Several processes may share one file: SQLite
    serialises their writes.
    Raises JournalError when the file cannot be opened or is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        try:
            db = open_journal_database(path)
        except SchemaError as exc:
            raise JournalError(f"{path}: journal schema {exc.version} is not supported") from None
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None
        super().__init__(path, db)

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Journal:
        """Open the journal of ``home`` (see :func:`journal_path`), creating it if missing."""
        return cls(journal_path(home))

    def _rows(self, run_id: str, records: Iterable[tuple[float, Any]]) -> list[tuple[Any, ...]]:
        """The event rows of ``records``; large results go to their files first."""
        rows = []
        for at, record in records:
            digest = None
            if (
                isinstance(record, protocol.StepSucceeded)
                and len(record.result) > blobs.BLOB_THRESHOLD
            ):
                digest = blobs.store(run_folder(run_id, self.home), memoryview(record.result))
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

    def delete(self, run_ids: Iterable[str], *, reclaim_space: bool = True) -> list[str]:
        """Remove runs: their rows, then their folders (logs, result files); return the ids.

        With ``reclaim_space`` the freed pages go back to the file system (VACUUM); without,
        SQLite reuses them for later runs. Runs still running are not removed: raises
        JournalError naming them (nothing is removed then), or when a write fails.
        """
        ids = list(dict.fromkeys(run_ids))
        try:
            with transaction(self.db):
                running = [r for r in ids if self._still_running(r)]
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
        every = sorted(self.run_ids() + self.folder_runs(), key=lambda run: run[1], reverse=True)
        for index, (run_id, created) in enumerate(every):
            old = older_than is not None and created < now - older_than
            beyond = keep is not None and index >= keep
            if (old or beyond) and not self._still_running(run_id):
                chosen.append(run_id)
        return self.delete(chosen, reclaim_space=reclaim_space) if chosen else []

    def folder_runs(self) -> list[tuple[str, float]]:
        """``(run_id, created_at)`` of the runs that have a run folder but no journal rows
        (``--no-journal`` runs, Python API runs)."""
        from mcpp.supervisor.logs import known_runs

        journalled = {run_id for run_id, _ in self.run_ids()}
        return [run for run in known_runs(self.home) if run[0] not in journalled]

    def resolve_any(self, text: str) -> str:
        """As :meth:`resolve`, among journalled runs and runs that only have a folder."""
        try:
            return resolve_run_id(text, self.run_ids() + self.folder_runs())
        except RunIdError as exc:
            raise RunIdError(f"{exc} in {self.home.absolute()}") from None

    def _still_running(self, run_id: str) -> bool:
        from mcpp.supervisor.logs import logs_folder, run_active

        if self._running_pid(run_id) is not None:
            return True
        return run_active(logs_folder(run_id, self.home))
