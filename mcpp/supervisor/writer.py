"""Write one run's events to the journal in batches, from a worker thread.

The supervisor's event hook calls :meth:`JournalWriter.record` (cheap, in memory); the
:meth:`JournalWriter.run` task writes the buffer every :data:`FLUSH_INTERVAL` seconds or
:data:`FLUSH_EVENTS` events in a worker thread, so the event loop never waits on the disk,
large results' files (:mod:`mcpp.supervisor.blobs`) included. Events still buffered when the
supervisor is killed are lost: resume then runs those steps again (at-least-once execution).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from mcpp.supervisor.journal import Journal

__all__ = ["FLUSH_EVENTS", "FLUSH_INTERVAL", "JournalWriter"]

FLUSH_INTERVAL: Final = 0.05
FLUSH_EVENTS: Final = 500


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
