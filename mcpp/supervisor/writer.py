"""Write one run's events to the journal in batches, from a worker thread.

The supervisor's event hook calls :meth:`JournalWriter.record` (cheap, in memory); the
:meth:`JournalWriter.run` task writes a batch at most :data:`FLUSH_INTERVAL` seconds after its
first event, or at :data:`FLUSH_EVENTS` events (the one batching loop, :mod:`mcpp.batching`),
in a worker thread, so the event loop never waits on the disk, large results' files
(:mod:`mcpp.supervisor.blobs`) included. Events still buffered when the supervisor is killed
are lost: resume then runs those steps again (at-least-once execution).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import trio

from mcpp.batching import Batcher

if TYPE_CHECKING:
    from mcpp.supervisor.journal import Journal

__all__ = ["FLUSH_EVENTS", "FLUSH_INTERVAL", "JournalWriter"]

FLUSH_INTERVAL: Final = 0.05
FLUSH_EVENTS: Final = 500


class JournalWriter:
    """Buffer one run's events in memory and write them in batches from a worker thread.

    :meth:`record` (cheap, synchronous: call it from the event hook) queues an event;
    :meth:`run` (a trio task, :class:`mcpp.batching.Batcher`'s loop) writes a batch at most
    ``interval`` seconds after its first event, or as soon as ``max_events`` are queued;
    :meth:`close` writes what is left plus an optional final record.
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
        self.pending: Batcher[tuple[float, Any]] = Batcher(
            self._write_async, delay=interval, max_items=max_events
        )
        self.batches = 0
        self.written = 0

    def record(self, event: Any) -> None:
        """Buffer ``event`` (a coordinator event) with the current time; never blocks."""
        self.pending.add((time.time(), event))

    def _write(self, batch: list[tuple[float, Any]]) -> None:
        self.journal.append(self.run_id, batch)
        self.batches += 1
        self.written += len(batch)

    async def _write_async(self, batch: list[tuple[float, Any]]) -> None:
        # Shielded: the batch is already out of the buffer, and trio.to_thread raises a pending
        # cancellation before it starts the thread: the run's end (which cancels this task)
        # could lose the last events, a step that succeeded then reading as running.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._write, batch)

    async def run(self) -> None:
        """Write the buffer in batches until cancelled (a write in progress completes)."""
        await self.pending.run()

    def close(self, final: Any = None) -> None:
        """Write the remaining events, and ``final`` after them, in one transaction."""
        batch = self.pending.take()
        if final is not None:
            batch.append((time.time(), final))
        if batch:
            self._write(batch)
