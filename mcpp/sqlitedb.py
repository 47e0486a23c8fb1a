"""The one SQLite set-up that mcpp's files share: the journal and the result cache.

:func:`open_database` opens (or creates) a database file the way both want it:

- the file is private: created 0600 before SQLite opens it (its ``-wal`` and ``-shm`` files
  take the database file's mode), in folders made by :func:`mcpp.home.private_folder` (0700);
- WAL mode (readers do not block the writer), ``synchronous = NORMAL`` (no fsync per commit:
  safe against a process crash, not a power loss), a busy timeout instead of failing on a lock;
- the schema is created in one ``BEGIN IMMEDIATE`` transaction when ``user_version`` is 0 and
  stamped with the schema version; another version is refused with :class:`SchemaError`
  (unless a migration from it is given).

:func:`open_readonly` opens an existing file read-only (``file:...?mode=ro``) and creates
nothing when it is missing; :func:`transaction` is the write transaction; :func:`reclaim`
gives the free pages back to the file system.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from mcpp.home import PRIVATE_FILE, private_folder

__all__ = ["SchemaError", "open_database", "open_readonly", "reclaim", "transaction"]


class SchemaError(ValueError):
    """The file's ``user_version`` is a schema this code does not know."""

    def __init__(self, path: Path, version: int, expected: int) -> None:
        super().__init__(f"{path}: schema version {version} is not supported (expected {expected})")
        self.version = version


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (its folders 0700)."""
    private_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)  # whatever the umask took away
    finally:
        os.close(fd)


def _configure(db: sqlite3.Connection, busy_timeout: float) -> None:
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")


def open_database(
    path: str | os.PathLike[str],
    *,
    schema: Sequence[str],
    version: int,
    busy_timeout: float,
    migrations: Mapping[int, Sequence[str]] | None = None,
) -> sqlite3.Connection:
    """Open or create the database ``path`` with ``schema`` at ``version``; return it.

    The connection is in autocommit mode (``isolation_level=None``: use :func:`transaction`)
    and may be used from another thread than its creator's, one at a time. ``migrations`` maps
    an older version to the statements that bring it to ``version``.

    Raises SchemaError for a file of another version, ``sqlite3.Error`` (``DatabaseError`` for
    a file that is not a database, ``OperationalError`` for a lock held beyond
    ``busy_timeout`` seconds) and OSError when the file or its folder cannot be created.
    """
    path = Path(path)
    _create_private(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
    try:
        _configure(db, busy_timeout)
        # WAL is a property of the file: only the first opener switches it, others see it set.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        if _version(db) != version:
            with transaction(db):
                found = _version(db)
                if found == 0:
                    for statement in schema:
                        db.execute(statement)
                elif migrations and found in migrations:
                    for statement in migrations[found]:
                        db.execute(statement)
                elif found != version:
                    raise SchemaError(path, found, version)
                db.execute(f"PRAGMA user_version = {int(version)}")
    except BaseException:
        db.close()
        raise
    return db


def open_readonly(
    path: str | os.PathLike[str], *, version: int, busy_timeout: float
) -> sqlite3.Connection | None:
    """Open the existing database ``path`` read-only; ``None`` when there is no such file.

    Creates no file or folder (SQLite may add the ``-shm`` index beside an existing WAL
    database, with the database's mode). Raises SchemaError for another schema version (an
    empty file, version 0, counts as "no database": ``None``) and ``sqlite3.Error``.
    """
    path = Path(path).absolute()
    if not path.is_file():
        return None
    db = sqlite3.connect(
        f"file:{quote(str(path))}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout,
    )
    try:
        _configure(db, busy_timeout)
        found = _version(db)
    except BaseException:
        db.close()
        raise
    if found == 0:
        db.close()
        return None
    if found != version:
        db.close()
        raise SchemaError(path, found, version)
    return db


def _version(db: sqlite3.Connection) -> int:
    found: int = db.execute("PRAGMA user_version").fetchone()[0]
    return found


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def reclaim(db: sqlite3.Connection) -> None:
    """Give the file's free pages back: ``VACUUM``, then truncate the WAL into the file.

    Call it outside a transaction. Raises ``sqlite3.Error`` (``OperationalError`` while
    another connection holds a write lock beyond the busy timeout).
    """
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
