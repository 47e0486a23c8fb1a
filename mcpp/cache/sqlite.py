"""A persistent cache in one SQLite file, shared safely by threads and processes.

The file is set up by :mod:`mcpp.sqlitedb` (private 0600, WAL mode: readers do not block the
writer; every connection waits up to ``busy_timeout`` seconds for a lock instead of failing),
and every operation that changes
anything (a ``get`` does: it updates read times, counts and counters) runs in one
``BEGIN IMMEDIATE`` transaction, so concurrent processes see each other's entries and the
bounds and counters stay consistent. Counters are stored in the file, so they are shared by
every process that opens it.
"""

from __future__ import annotations

import fnmatch
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mcpp.cache.model import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    CacheBackend,
    CacheEntry,
    CacheHit,
    CacheStats,
    Policy,
    check_bounds,
    check_ttl,
)
from mcpp.sqlitedb import SchemaError, open_database, transaction

__all__ = ["SCHEMA_VERSION", "SQLiteCache"]

SCHEMA_VERSION = 1
"""Stored as the file's ``user_version``; a file with another version is refused."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY,
        step_id TEXT NOT NULL,
        value BLOB NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        last_access REAL NOT NULL,
        access_count INTEGER NOT NULL,
        expires_at REAL,
        inserted INTEGER NOT NULL,
        touched INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entries_step ON entries (step_id)",
    "CREATE INDEX IF NOT EXISTS entries_inserted ON entries (inserted)",
    "CREATE INDEX IF NOT EXISTS entries_touched ON entries (touched)",
    "CREATE INDEX IF NOT EXISTS entries_frequency ON entries (access_count, inserted)",
    "CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at)",
    """CREATE TABLE IF NOT EXISTS state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        hits INTEGER NOT NULL,
        misses INTEGER NOT NULL,
        evictions INTEGER NOT NULL,
        expirations INTEGER NOT NULL,
        sequence INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO state VALUES (1, 0, 0, 0, 0, 0)",
)

# The order in which each policy evicts; "inserted" and "touched" are sequence numbers, so ties
# of the clock do not matter.
_EVICTION_ORDER: dict[str, str] = {
    "lru": "touched",
    "lfu": "access_count, inserted",
    "fifo": "inserted",
}

_COLUMNS = "key, step_id, created_at, last_access, access_count, size, expires_at"


class SQLiteCache(CacheBackend):
    """A bounded :class:`CacheBackend` in the SQLite file ``path`` (created with its folders).

    Bounds and policy belong to this handle, not to the file: each ``put`` enforces the bounds
    of the handle that stores. Open a handle in each process (a connection must not cross a
    ``fork``); one handle may be shared between threads.

    Raises ``ValueError`` for a bound below 1, an unknown policy, or a file that is not an mcpp
    cache of this schema version; ``sqlite3.OperationalError`` if a lock is not granted within
    ``busy_timeout`` seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        policy: Policy = "lru",
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
    ) -> None:
        check_bounds(max_entries, max_bytes, policy)
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.policy: Policy = policy
        self._clock = clock
        self._order = _EVICTION_ORDER[policy]
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = open_database(
                self.path, schema=_SCHEMA, version=SCHEMA_VERSION, busy_timeout=busy_timeout
            )
        except SchemaError as exc:
            raise ValueError(f"{self.path}: not an mcpp cache: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            raise ValueError(f"{self.path}: not an mcpp cache: {exc}") from exc

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise ValueError("the cache is closed")
            with transaction(self._db) as db:
                yield db

    def _count(self, db: sqlite3.Connection, counter: str, amount: int = 1) -> None:
        if amount:
            db.execute(f"UPDATE state SET {counter} = {counter} + ?", (amount,))

    def _next_sequence(self, db: sqlite3.Connection) -> int:
        row = db.execute("UPDATE state SET sequence = sequence + 1 RETURNING sequence").fetchone()
        return int(row[0])

    def _purge(self, db: sqlite3.Connection, now: float) -> int:
        removed = db.execute(
            "DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        ).rowcount
        self._count(db, "expirations", removed)
        return removed

    def get(self, key: str) -> CacheHit | None:
        with self._writing() as db:
            now = self._clock()
            row = db.execute(
                "SELECT value, expires_at FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is not None and row[1] is not None and now >= row[1]:
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                self._count(db, "expirations")
                row = None
            if row is None:
                self._count(db, "misses")
                return None
            db.execute(
                "UPDATE entries SET last_access = ?, access_count = access_count + 1, touched = ?"
                " WHERE key = ?",
                (now, self._next_sequence(db), key),
            )
            self._count(db, "hits")
            return CacheHit(bytes(row[0]))

    def put(self, key: str, value: bytes, *, step_id: str, ttl: float | None = None) -> bool:
        if not isinstance(value, bytes):
            raise TypeError(f"cache values are bytes, not {type(value).__name__}")
        check_ttl(ttl)
        size = len(value)
        with self._writing() as db:
            if size > self.max_bytes:
                return False
            now = self._clock()
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            self._purge(db, now)
            count, total = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
            ).fetchone()
            while count and (count + 1 > self.max_entries or total + size > self.max_bytes):
                victim, victim_size = db.execute(
                    f"SELECT key, size FROM entries ORDER BY {self._order} LIMIT 1"
                ).fetchone()
                db.execute("DELETE FROM entries WHERE key = ?", (victim,))
                self._count(db, "evictions")
                count -= 1
                total -= victim_size
            sequence = self._next_sequence(db)
            db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    key,
                    step_id,
                    value,
                    size,
                    now,
                    now,
                    None if ttl is None else now + ttl,
                    sequence,
                    sequence,
                ),
            )
            return True

    def invalidate(self, key: str) -> bool:
        with self._writing() as db:
            return db.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def invalidate_step(self, step_id: str) -> int:
        with self._writing() as db:
            return db.execute("DELETE FROM entries WHERE step_id = ?", (step_id,)).rowcount

    def invalidate_pattern(self, pattern: str) -> int:
        with self._writing() as db:
            step_ids = [row[0] for row in db.execute("SELECT DISTINCT step_id FROM entries")]
            removed = 0
            for step_id in step_ids:
                if fnmatch.fnmatchcase(step_id, pattern):
                    removed += db.execute(
                        "DELETE FROM entries WHERE step_id = ?", (step_id,)
                    ).rowcount
            return removed

    def purge_expired(self) -> int:
        with self._writing() as db:
            return self._purge(db, self._clock())

    def entries(self) -> list[CacheEntry]:
        with self._writing() as db:
            self._purge(db, self._clock())
            rows = db.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY inserted").fetchall()
        return [
            CacheEntry(
                key=key,
                step_id=step_id,
                created_at=created_at,
                last_access=last_access,
                access_count=access_count,
                size=size,
                expires_at=expires_at,
            )
            for key, step_id, created_at, last_access, access_count, size, expires_at in rows
        ]

    def stats(self) -> CacheStats:
        with self._writing() as db:
            self._purge(db, self._clock())
            entries, total = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
            ).fetchone()
            hits, misses, evictions, expirations = db.execute(
                "SELECT hits, misses, evictions, expirations FROM state"
            ).fetchone()
        return CacheStats(
            entries=entries,
            bytes=total,
            hits=hits,
            misses=misses,
            evictions=evictions,
            expirations=expirations,
        )

    def clear(self) -> int:
        with self._writing() as db:
            removed = db.execute("DELETE FROM entries").rowcount
            db.execute("UPDATE state SET hits = 0, misses = 0, evictions = 0, expirations = 0")
            return int(removed)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
