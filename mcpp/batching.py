"""One batching loop: items queued without blocking, sent in batches by one trio task.

Three parts of mcpp batch what they send, each for its own reason: the coordinator's events
to the supervisor (:mod:`mcpp.actors.outbox`), a pool worker's reports to its coordinator
(:mod:`mcpp.actors.runner`) and the supervisor's journal writes. They share the rule of
:class:`Batcher`: the :meth:`~Batcher.run` task waits for a first item, then *lingers* up to
``delay`` seconds for more, and sends everything queued by then as one batch; what arrives
while a batch is being sent goes in the next one. Lingering ends early when an item comes
that ``urgent`` says must not wait, when ``max_items`` are queued, or at :meth:`~Batcher.close`.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

__all__ = ["Batcher"]

T = TypeVar("T")


def _never(_item: object) -> bool:
    return False


class Batcher(Generic[T]):
    """Queue items with :meth:`add`; the :meth:`run` task hands them to ``send`` in batches.

    ``send`` gets a non-empty list, in the order the items were added; one ``send`` runs at a
    time. :meth:`add_from_thread` needs the batcher built inside trio (it keeps the trio token)
    and raises ``RuntimeError`` otherwise.
    Whatever ``send`` raises is raised from :meth:`run`, :meth:`send_now` or :meth:`close`
    (the items of that batch are then lost to the batcher: the caller owns the failure).
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[None]],
        *,
        delay: float,
        max_items: float = math.inf,
        urgent: Callable[[T], bool] = _never,
    ) -> None:
        self._send = send
        self.delay = delay
        self.max_items = max_items
        self._urgent = urgent
        self._items: deque[T] = deque()
        self._hurry = False  # an urgent item is queued, or max_items are
        self._lingering = False
        self._wake = trio.Event()
        self._poke_pending = False
        self._token: trio.lowlevel.TrioToken | None = None
        with contextlib.suppress(RuntimeError):  # outside trio: no add_from_thread
            self._token = trio.lowlevel.current_trio_token()
        self._sending = trio.Lock()
        self._closing = False
        self._flushed = trio.Event()

    def add(self, item: T) -> None:
        """Queue ``item`` (from the trio thread); never blocks."""
        self._items.append(item)
        if self._urgent(item) or len(self._items) >= self.max_items:
            self._hurry = True
        self._check()

    def add_from_thread(self, item: T) -> None:
        """Queue ``item`` from another thread; never blocks, and costs the loop one wake-up
        however many items arrive before it runs."""
        self._items.append(item)
        if self._urgent(item) or len(self._items) >= self.max_items:
            self._hurry = True
        if self._token is None:
            raise RuntimeError("add_from_thread needs a Batcher built inside trio")
        if not self._poke_pending:
            self._poke_pending = True
            self._token.run_sync_soon(self._poked)

    def take(self) -> list[T]:
        """Remove and return everything queued (for a last, synchronous write)."""
        items = []
        while self._items:
            items.append(self._items.popleft())
        self._hurry = False
        return items

    async def send_now(self) -> None:
        """Send everything queued now, as one batch (after a send under way ends)."""
        async with self._sending:
            items = self.take()
            if items:
                await self._send(items)

    async def run(self) -> None:
        """Task: send batches until :meth:`close` has been called and everything is sent."""
        try:
            while not self._closing:
                await self._wake.wait()
                self._wake = trio.Event()
                if not self._items:
                    continue
                if not self._hurry and not self._closing:
                    self._lingering = True
                    with trio.move_on_after(self.delay):
                        await self._wake.wait()
                    self._lingering = False
                    self._wake = trio.Event()
                await self.send_now()
            await self.send_now()  # what came while the last batch was being sent
        finally:
            self._flushed.set()

    async def close(self) -> None:
        """Send what is queued and wait until :meth:`run` has sent everything and returned."""
        self._closing = True
        self._wake.set()
        await self._flushed.wait()

    def _poked(self) -> None:
        self._poke_pending = False
        self._check()

    def _check(self) -> None:
        # Wake run(): it waits for a first item, or lingers and must stop lingering now.
        if self._items and (not self._lingering or self._hurry):
            self._wake.set()
