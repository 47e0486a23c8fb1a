"""Large step results, kept out of the journal's SQLite file.

A result larger than :data:`BLOB_THRESHOLD` bytes is stored as the file
``run_folder(run_id)/results/<sha256>`` (content-addressed: the name is the SHA-256 of the
bytes, so storing the same bytes twice writes once) and the journal row holds only the hash.
Files are private (0600, in 0700 folders), written under a temporary name, fsync'd, then
renamed, and the folder fsync'd: once :func:`store` returns, the file is whole under its name
before the journal row that names it is committed. :func:`load` verifies the hash. The files go
with their run (``mcpp runs rm``, ``prune``: the whole run folder is removed).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Final

from mcpp.home import PRIVATE_FILE, private_folder

__all__ = ["BLOB_THRESHOLD", "BlobError", "load", "results_folder", "store"]

BLOB_THRESHOLD: Final = 64 * 1024
"""Results of more bytes than this are files of their own, not journal rows."""


class BlobError(ValueError):
    """A stored result file is missing or its bytes do not match its hash (the journal
    reports it as a JournalError)."""


def results_folder(run_folder: Path) -> Path:
    """The folder of a run's large results (not created)."""
    return run_folder / "results"


def store(run_folder: Path, data: bytes | memoryview) -> str:
    """Store ``data`` under ``run_folder/results/`` and return its SHA-256 (hex).

    Raises OSError when the file cannot be written (nothing is left under its final name).
    """
    digest = hashlib.sha256(data).hexdigest()
    folder = private_folder(results_folder(run_folder))
    final = folder / digest
    if final.is_file() and final.stat().st_size == len(data):
        return digest
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), PRIVATE_FILE)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, final)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return digest


def load(run_folder: Path, digest: str) -> bytes:
    """Read the result stored under ``digest``; raise BlobError if it is missing or altered."""
    path = results_folder(run_folder) / digest
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BlobError(f"the stored result {path} cannot be read: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise BlobError(f"the stored result {path} does not match its hash (altered or damaged)")
    return data
