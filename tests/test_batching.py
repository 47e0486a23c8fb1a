"""The one batching loop (mcpp/batching.py), under trio's virtual clock: no real waiting."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from mcpp.batching import Batcher


class Sink:
    """Records each batch it is sent and the virtual time it came."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[int]]] = []
        self.arrived = trio.Event()

    async def send(self, items: list[int]) -> None:
        self.batches.append((trio.current_time(), items))
        self.arrived.set()

    async def next_batch(self) -> None:
        """Wait for the next batch to be sent."""
        await self.arrived.wait()
        self.arrived = trio.Event()


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[tuple[Batcher[int], Sink]]:
    """A batcher whose run() task runs in the block, closed at its end."""
    sink = Sink()
    batcher: Batcher[int] = Batcher(sink.send, **options)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        yield batcher, sink
        await batcher.close()


async def test_items_queued_within_the_delay_leave_in_one_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(delay=1.0) as (batcher, sink):
        begun = trio.current_time()
        batcher.add(1)
        await trio.sleep(0.5)
        batcher.add(2)
        await sink.next_batch()
        batcher.add(3)
    assert [items for _, items in sink.batches] == [[1, 2], [3]]
    assert sink.batches[0][0] - begun == 1.0


async def test_an_urgent_item_or_a_full_batch_ends_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(delay=10.0, max_items=3, urgent=lambda item: item < 0) as (batcher, sink):
        begun = trio.current_time()
        batcher.add(1)
        await trio.sleep(1)
        batcher.add(-1)
        await sink.next_batch()
        for item in (2, 3, 4):
            batcher.add(item)
        await sink.next_batch()
    assert sink.batches == [(begun + 1, [1, -1]), (begun + 1, [2, 3, 4])]


async def test_close_sends_what_is_queued_and_run_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(delay=60.0) as (batcher, sink):
        batcher.add(7)
        await trio.testing.wait_all_tasks_blocked()
        begun = trio.current_time()
    assert sink.batches == [(begun, [7])]


async def test_items_from_another_thread_arrive_in_order() -> None:
    async with running(delay=0.001) as (batcher, sink):

        def produce() -> None:
            for item in range(1000):
                batcher.add_from_thread(item)

        await trio.to_thread.run_sync(produce)
    assert [item for _, items in sink.batches for item in items] == list(range(1000))


def test_take_empties_the_queue_for_a_last_synchronous_write() -> None:
    batcher = Batcher(Sink().send, delay=1.0)
    batcher.add(1)
    batcher.add(2)
    assert batcher.take() == [1, 2]
    assert batcher.take() == []
