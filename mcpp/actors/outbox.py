"""The coordinator's events on their way to the supervisor, in batches.

``emit`` never blocks: it queues the event. The :meth:`Outbox.flush` task sends what is queued
as one ``EventBatch``, after waiting up to :data:`EVENT_DELAY` past the first event of a batch
for more (the supervisor only records and shows events, so fewer, larger batches cost the run
nothing); whatever piles up while one batch is sent goes in the next. :meth:`Outbox.close`
sends the rest and returns once every event is out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from mcpp import protocol
from mcpp.protocol import EventBatch

__all__ = ["EVENT_DELAY", "Outbox", "Send"]

EVENT_DELAY = 0.005

Send = Callable[[bytes], Awaitable[None]]


class Outbox:
    """Events queued by :meth:`emit`, sent with ``send`` by the :meth:`flush` task."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._events: list[Any] = []
        self._ready = trio.Event()
        self._closing = trio.Event()
        self._flushed = trio.Event()

    def emit(self, event: Any) -> None:
        """Queue one event."""
        self._events.append(event)
        self._ready.set()

    async def emit_async(self, event: Any) -> None:
        """:meth:`emit` for callers that await it."""
        self.emit(event)

    async def flush(self) -> None:
        """Task: send queued events in batches until :meth:`close` and every event is sent."""
        while not self._closing.is_set():
            await self._ready.wait()
            with trio.move_on_after(EVENT_DELAY):
                await self._closing.wait()
            self._ready = trio.Event()
            await self._send_queued()
        await self._send_queued()  # what came while the last batch was being sent
        self._flushed.set()

    async def close(self) -> None:
        """Send what is queued now and wait until :meth:`flush` has sent every event."""
        self._closing.set()
        self._ready.set()
        await self._flushed.wait()

    async def _send_queued(self) -> None:
        if self._events:
            batch, self._events = self._events, []
            await self._send(protocol.encode(EventBatch(events=tuple(batch))))
