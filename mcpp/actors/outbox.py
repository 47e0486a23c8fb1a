"""The coordinator's events on their way to the supervisor, in batches.

``add`` never blocks: it queues the event. The :meth:`Outbox.run` task sends what is queued
as one ``EventBatch``, after waiting up to :data:`EVENT_DELAY` past the first event of a batch
for more (the supervisor only records and shows events, so fewer, larger batches cost the run
nothing); whatever piles up while one batch is sent goes in the next. :meth:`Outbox.close`
sends the rest and returns once every event is out. The loop is :class:`mcpp.batching.Batcher`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcpp import protocol
from mcpp.batching import Batcher
from mcpp.protocol import EventBatch

__all__ = ["EVENT_DELAY", "Outbox", "Send"]

EVENT_DELAY = 0.005

Send = Callable[[bytes], Awaitable[None]]


class Outbox(Batcher[Any]):
    """Events queued by :meth:`add`, sent with ``send`` by the :meth:`run` task."""

    def __init__(self, send: Send) -> None:
        async def send_events(events: list[Any]) -> None:
            await send(protocol.encode(EventBatch(events=tuple(events))))

        super().__init__(send_events, delay=EVENT_DELAY)

    async def emit_async(self, event: Any) -> None:
        """:meth:`add` for callers that await it."""
        self.add(event)
