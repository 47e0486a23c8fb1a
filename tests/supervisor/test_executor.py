"""StructuredConcurrencyExecutor: bounded concurrency, ordered results, recorded outcomes.

Everything that depends on time runs on trio's autojump clock; nothing is timed on the real one.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
import trio
import trio.testing

from mcpp.supervisor.executor import (
    Call,
    StructuredConcurrencyExecutor,
    TaskResult,
    TaskStatus,
)


async def sleep_then_return(seconds: float, value: Any) -> Any:
    await trio.sleep(seconds)
    return value


async def fail(message: str, after: float = 0) -> None:
    await trio.sleep(after)
    raise ValueError(message)


async def test_peak_concurrency_equals_max_concurrent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    running = peak = 0

    async def tracked() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    async with StructuredConcurrencyExecutor(3) as ex:
        start = trio.current_time()
        results = await ex.execute_parallel([Call(tracked) for _ in range(10)])
        elapsed = trio.current_time() - start

    assert peak == 3
    assert ex.statistics().peak_running == 3
    assert elapsed == pytest.approx(4)  # ceil(10 / 3) waves of one second
    assert [r.status for r in results] == [TaskStatus.SUCCEEDED] * 10


async def test_results_are_in_input_order_when_later_tasks_finish_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[int] = []

    async def job(i: int) -> int:
        await trio.sleep(5 - i)
        finished.append(i)
        return i * 10

    async with StructuredConcurrencyExecutor(5) as ex:
        results = await ex.execute_parallel([(job, (i,), {}) for i in range(5)])

    assert finished == [4, 3, 2, 1, 0]
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.value for r in results] == [0, 10, 20, 30, 40]


async def test_calls_get_slots_in_input_order(autojump_clock: trio.testing.MockClock) -> None:
    started: list[int] = []

    async def job(i: int) -> None:
        started.append(i)
        await trio.sleep(1)

    async with StructuredConcurrencyExecutor(2) as ex:
        for _ in range(5):  # trio may run a batch of new tasks in either order
            started.clear()
            await ex.execute_parallel([Call(job, (i,)) for i in range(6)])
            assert started == list(range(6))


async def test_timeout_is_recorded_as_timed_out(autojump_clock: trio.testing.MockClock) -> None:
    async with StructuredConcurrencyExecutor(2, default_timeout=5) as ex:
        slow, quick = await ex.execute_parallel(
            [Call(sleep_then_return, (10, "late")), Call(sleep_then_return, (1, "ok"))]
        )
        explicit = await ex.execute_single(sleep_then_return, 3, "x", timeout=2)
        unlimited = await ex.execute_single(sleep_then_return, 60, "y", timeout=math.inf)

    assert slow.status is TaskStatus.TIMED_OUT
    assert slow.value is None and slow.error is None
    assert slow.duration_s == pytest.approx(5)
    assert quick.status is TaskStatus.SUCCEEDED and quick.value == "ok"
    assert explicit.status is TaskStatus.TIMED_OUT
    assert explicit.duration_s == pytest.approx(2)
    assert unlimited.status is TaskStatus.SUCCEEDED and unlimited.value == "y"


async def test_failure_is_recorded_without_cancelling_siblings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with StructuredConcurrencyExecutor(4) as ex:
        results = await ex.execute_parallel(
            [
                Call(sleep_then_return, (2, "first")),
                Call(fail, ("boom",)),
                Call(sleep_then_return, (3, "last")),
            ]
        )

    assert [r.status for r in results] == [
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.SUCCEEDED,
    ]
    error = results[1].error
    assert error is not None
    assert (error.type, error.message) == ("ValueError", "boom")
    assert "in fail" in error.traceback
    assert results[1].value is None
    assert [results[0].value, results[2].value] == ["first", "last"]


async def test_cancel_records_running_and_queued_tasks_as_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    results: list[TaskResult] = []
    async with StructuredConcurrencyExecutor(2) as ex, trio.open_nursery() as nursery:

        async def run() -> None:
            results.extend(await ex.execute_parallel([Call(trio.sleep, (10,))] * 4))

        nursery.start_soon(run)
        await trio.sleep(1)
        assert ex.statistics().running == 2
        ex.cancel()

    assert [r.status for r in results] == [TaskStatus.CANCELLED] * 4
    assert [r.duration_s for r in results] == pytest.approx([1, 1, 0, 0])  # two never started
    assert ex.statistics().cancelled == 4


async def test_leaving_the_context_cancels_what_still_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    results: list[TaskResult] = []
    async with trio.open_nursery() as outer, StructuredConcurrencyExecutor(2) as ex:

        async def run() -> None:
            results.extend(await ex.execute_parallel([Call(trio.sleep, (10,))] * 3))

        outer.start_soon(run)
        await trio.sleep(1)

    assert [r.status for r in results] == [TaskStatus.CANCELLED] * 3


async def test_a_cancelled_caller_cancels_its_tasks(autojump_clock: trio.testing.MockClock) -> None:
    async with StructuredConcurrencyExecutor(2) as ex:
        with trio.move_on_after(1):
            await ex.execute_parallel([Call(trio.sleep, (10,))] * 3)
        await trio.testing.wait_all_tasks_blocked()
        stats = ex.statistics()

    assert stats.cancelled == 3
    assert stats.running == 0


async def test_statistics_counts_rates_and_durations(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with StructuredConcurrencyExecutor(10, default_timeout=4) as ex:
        empty = ex.statistics()
        await ex.execute_parallel(
            [Call(sleep_then_return, (seconds, None)) for seconds in (1, 2, 3)]
            + [Call(fail, ("x", 0.5)), Call(trio.sleep, (100,))]
        )
        stats = ex.statistics()

    assert empty.success_rate is None and empty.mean_duration_s is None
    assert (stats.succeeded, stats.failed, stats.timed_out, stats.cancelled) == (3, 1, 1, 0)
    assert stats.success_rate == pytest.approx(3 / 5)
    # durations 1, 2, 3, 0.5 (failed), 4 (timed out)
    assert stats.mean_duration_s == pytest.approx(2.1)
    assert stats.p50_duration_s == pytest.approx(2)
    assert stats.p95_duration_s == pytest.approx(4)
    assert stats.running == 0
    assert stats.peak_running == 5


async def test_execute_batch_runs_batches_one_after_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with StructuredConcurrencyExecutor(10) as ex:
        start = trio.current_time()
        results = await ex.execute_batch(
            [Call(sleep_then_return, (1, i)) for i in range(5)], batch_size=2
        )
        elapsed = trio.current_time() - start

    assert elapsed == pytest.approx(3)
    assert ex.statistics().peak_running == 2
    assert [(r.index, r.value) for r in results] == [(i, i) for i in range(5)]


async def test_sync_functions_run_in_a_thread() -> None:
    def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    def explode() -> None:
        raise KeyError("missing")

    async with StructuredConcurrencyExecutor(2) as ex:
        single = await ex.execute_single(add, 2, 3, scale=10)
        parallel = await ex.execute_parallel([Call(add, (1, 1)), Call(explode)])

    assert single.status is TaskStatus.SUCCEEDED and single.value == 50
    assert parallel[0].value == 2
    assert parallel[1].status is TaskStatus.FAILED
    assert parallel[1].error is not None
    assert (parallel[1].error.type, parallel[1].error.message) == ("KeyError", "'missing'")


async def test_a_callable_with_an_async_call_method_is_awaited() -> None:
    class Tool:
        async def __call__(self, x: int) -> int:
            await trio.lowlevel.checkpoint()
            return x + 1

    async with StructuredConcurrencyExecutor(1) as ex:
        result = await ex.execute_single(Tool(), 1)

    assert result.value == 2


async def test_a_sync_call_past_its_deadline_keeps_its_slot_and_is_timed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = threading.Event()

    def blocking() -> str:
        release.wait(timeout=60)  # a safety net only; the test sets it
        return "late"

    async def release_at(seconds: float) -> None:
        await trio.sleep(seconds)
        assert ex.statistics().running == 1  # the thread still holds its slot
        release.set()

    async with StructuredConcurrencyExecutor(1) as ex, trio.open_nursery() as nursery:
        nursery.start_soon(release_at, 5)
        result = await ex.execute_single(blocking, timeout=1)

    assert result.status is TaskStatus.TIMED_OUT
    assert result.value is None
    assert result.duration_s >= 5


async def test_use_outside_the_context_raises_runtime_error() -> None:
    ex = StructuredConcurrencyExecutor(1)
    with pytest.raises(RuntimeError, match="not open"):
        await ex.execute_single(trio.sleep, 0)
    async with ex:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await ex.execute_parallel([Call(trio.sleep, (0,))])
    with pytest.raises(RuntimeError, match="closed"):
        await ex.execute_batch([], batch_size=1)
    with pytest.raises(RuntimeError, match="only once"):
        async with ex:
            pass


async def test_invalid_arguments_raise_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        StructuredConcurrencyExecutor(0)
    with pytest.raises(ValueError, match="timeout"):
        StructuredConcurrencyExecutor(1, default_timeout=-1)
    started: list[int] = []

    async def note() -> None:
        started.append(1)

    async with StructuredConcurrencyExecutor(1) as ex:
        with pytest.raises(ValueError, match="timeout"):
            await ex.execute_single(note, timeout=math.nan)
        with pytest.raises(ValueError, match="batch_size"):
            await ex.execute_batch([Call(note)], batch_size=0)
        with pytest.raises(TypeError, match="expected a Call"):
            await ex.execute_parallel([Call(note), (note,)])  # type: ignore[list-item]
    assert started == []
    assert ex.statistics().succeeded == 0
