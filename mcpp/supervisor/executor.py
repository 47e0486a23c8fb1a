"""An in-process trio executor for async tools: bounded concurrency, per-task timeouts.

:class:`StructuredConcurrencyExecutor` runs functions in the current process under one
:class:`trio.CapacityLimiter` and returns a :class:`TaskResult` per call. A task's failure,
timeout or cancellation is *recorded* in its result, never raised to the caller, and never
cancels its siblings::

    async with StructuredConcurrencyExecutor(4, default_timeout=5) as ex:
        results = await ex.execute_parallel([Call(fetch, ("a",)), Call(fetch, ("b",))])

Misuse is a programming error, raised as trio raises it and not as an :class:`~mcpp.errors.
MCPPError`: ``RuntimeError`` when the executor is used outside its ``async with`` block (or
entered twice), ``ValueError`` for an invalid size or timeout, ``TypeError`` for a call that is
neither a :class:`Call` nor an ``(fn, args, kwargs)`` tuple.
"""

from __future__ import annotations

import itertools
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias

import trio

from mcpp import calls
from mcpp.protocol import ErrorInfo
from mcpp.status import StepState

__all__ = [
    "Call",
    "CallLike",
    "ExecutorStatistics",
    "StructuredConcurrencyExecutor",
    "TaskResult",
    "TaskStatus",
]


# How a task ended: SUCCEEDED, FAILED (the function raised an Exception), TIMED_OUT (it had
# not finished by its deadline) or CANCELLED (cancel(), context exit, the caller): mcpp's one
# status vocabulary.
TaskStatus = StepState


@dataclass(frozen=True, slots=True)
class Call:
    """One function call to run: ``fn(*args, **kwargs)``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, call: CallLike) -> Call:
        """Return ``call`` as a :class:`Call`; raise ``TypeError`` if it is not call-like."""
        if isinstance(call, Call):
            return call
        if isinstance(call, tuple) and len(call) == 3 and callable(call[0]):
            fn, args, kwargs = call
            return cls(fn, tuple(args), dict(kwargs))
        raise TypeError(f"expected a Call or an (fn, args, kwargs) tuple, got {call!r}")


CallLike: TypeAlias = Call | tuple[Callable[..., Any], Sequence[Any], Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """The outcome of one call.

    ``value`` is the return value when SUCCEEDED, else ``None``; ``error`` is set only when
    FAILED. ``duration_s`` is the time the function ran (0.0 if it never got a slot). ``index``
    is the call's position in the input sequence (0 for :meth:`execute_single`).
    """

    status: TaskStatus
    value: Any = None
    error: ErrorInfo | None = None
    duration_s: float = 0.0
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorStatistics:
    """A snapshot of an executor's counters since it was created.

    ``success_rate`` is succeeded / finished. Durations (mean, and p50/p95 by nearest rank) are
    over tasks that got a slot. Each is ``None`` while there is nothing to compute it from.
    """

    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    running: int
    peak_running: int
    success_rate: float | None
    mean_duration_s: float | None
    p50_duration_s: float | None
    p95_duration_s: float | None


@dataclass(eq=False, slots=True)
class _Slot:
    """A submitted call's mutable bookkeeping (internal)."""

    index: int
    call: Call
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    admitted: trio.Event = field(default_factory=trio.Event)  # got a slot, or gave up waiting
    after: trio.Event | None = None  # the previous call's ``admitted``
    result: TaskResult | None = None


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    return ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)]


class StructuredConcurrencyExecutor:
    """Run calls concurrently, at most ``max_concurrent`` at a time, each under a timeout.

    Use it as an async context manager; it owns a nursery in which every task runs, so no task
    outlives the block: leaving it cancels whatever still runs or waits (recorded CANCELLED).

    An async function (or callable with an async ``__call__``) is awaited; any other callable
    runs in a worker thread (:func:`trio.to_thread.run_sync`). A thread cannot be interrupted:
    a sync call keeps its slot until it returns, then is recorded TIMED_OUT or CANCELLED if its
    deadline passed or it was cancelled meanwhile.

    ``timeout`` (seconds, per task, counted from when the task gets a slot): ``None`` means
    ``default_timeout``; ``math.inf`` means no timeout. Raises ``ValueError`` if
    ``max_concurrent < 1`` or a timeout is negative or NaN.
    """

    def __init__(self, max_concurrent: int, default_timeout: float | None = None) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self._default_timeout = _check_timeout(default_timeout)
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._pending: set[_Slot] = set()
        self._running = 0
        self._peak_running = 0
        self._counts = dict.fromkeys(TaskStatus, 0)
        self._durations: list[float] = []

    async def __aenter__(self) -> Self:
        if self._nursery_manager is not None or self._closed:
            raise RuntimeError("a StructuredConcurrencyExecutor can be entered only once")
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery_manager is not None
        self._closed = True
        self.cancel()
        self._nursery = None
        return await self._nursery_manager.__aexit__(exc_type, exc, tb)

    def cancel(self) -> None:
        """Cancel every task submitted so far that has not finished; each records CANCELLED.

        Calls submitted later run normally. Safe to call at any time, also outside the block.
        """
        for slot in self._pending:
            slot.scope.cancel()

    async def execute_single(
        self,
        fn: Callable[..., Any],
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109  (a per-task deadline, recorded)
        **kwargs: Any,
    ) -> TaskResult:
        """Run ``fn(*args, **kwargs)`` and return its result (``index`` 0).

        To pass ``fn`` a keyword argument named ``timeout``, use :meth:`execute_parallel`.
        Raises ``RuntimeError`` outside the ``async with`` block.
        """
        (result,) = await self._execute([Call(fn, args, kwargs)], timeout, offset=0)
        return result

    async def execute_parallel(
        self,
        calls: Sequence[CallLike],
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a per-task deadline, recorded)
    ) -> list[TaskResult]:
        """Run all ``calls`` concurrently (bounded) and return their results in input order.

        If the caller is cancelled, the calls it started are cancelled too. Raises
        ``RuntimeError`` outside the ``async with`` block, ``TypeError`` for a call that is not
        call-like (before anything starts).
        """
        return await self._execute(calls, timeout, offset=0)

    async def execute_batch(
        self,
        calls: Sequence[CallLike],
        *,
        batch_size: int,
        timeout: float | None = None,  # noqa: ASYNC109  (a per-task deadline, recorded)
    ) -> list[TaskResult]:
        """Run ``calls`` in successive batches of ``batch_size``, each batch finishing first.

        Results are in input order, ``index`` counted over all ``calls``. Raises ``ValueError``
        if ``batch_size < 1``, and as :meth:`execute_parallel`.
        """
        self._open_nursery()
        _check_timeout(timeout)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        coerced = [Call.coerce(call) for call in calls]
        results: list[TaskResult] = []
        for start in range(0, len(coerced), batch_size):
            batch = coerced[start : start + batch_size]
            results += await self._execute(batch, timeout, offset=start)
        return results

    def statistics(self) -> ExecutorStatistics:
        """Return an immutable snapshot of the counters (see :class:`ExecutorStatistics`)."""
        counts = self._counts
        finished = sum(counts.values())
        ordered = sorted(self._durations)
        return ExecutorStatistics(
            succeeded=counts[TaskStatus.SUCCEEDED],
            failed=counts[TaskStatus.FAILED],
            timed_out=counts[TaskStatus.TIMED_OUT],
            cancelled=counts[TaskStatus.CANCELLED],
            running=self._running,
            peak_running=self._peak_running,
            success_rate=counts[TaskStatus.SUCCEEDED] / finished if finished else None,
            mean_duration_s=sum(ordered) / len(ordered) if ordered else None,
            p50_duration_s=_nearest_rank(ordered, 50) if ordered else None,
            p95_duration_s=_nearest_rank(ordered, 95) if ordered else None,
        )

    async def _execute(
        self, calls: Sequence[CallLike], limit_s: float | None, *, offset: int
    ) -> list[TaskResult]:
        nursery = self._open_nursery()
        limit = self._default_timeout if limit_s is None else _check_timeout(limit_s)
        slots = [_Slot(offset + i, Call.coerce(call)) for i, call in enumerate(calls)]
        for previous, slot in itertools.pairwise(slots):
            slot.after = previous.admitted
        for slot in slots:
            self._pending.add(slot)
            nursery.start_soon(self._run, slot, math.inf if limit is None else limit)
        try:
            for slot in slots:
                await slot.done.wait()
        finally:
            for slot in slots:
                slot.scope.cancel()  # a no-op for finished tasks; stops orphans if we are cancelled
        if not slots:
            await trio.lowlevel.checkpoint()
        results = []
        for slot in slots:
            assert slot.result is not None, "a finished task always has a result"
            results.append(slot.result)
        return results

    def _open_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            state = "closed" if self._closed else "not open"
            raise RuntimeError(f"executor is {state}: use it inside 'async with executor:'")
        return self._nursery

    async def _run(self, slot: _Slot, limit_s: float) -> None:
        status, value, error, duration = TaskStatus.CANCELLED, None, None, 0.0
        try:
            with slot.scope:
                try:
                    if slot.after is not None:
                        await slot.after.wait()  # calls queue for a slot in input order
                    await self._limiter.acquire()
                finally:
                    slot.admitted.set()
                self._running += 1
                self._peak_running = max(self._peak_running, self._running)
                started = trio.current_time()
                try:
                    with trio.move_on_after(limit_s) as deadline:
                        try:
                            call = slot.call
                            value = await calls.call(call.fn, call.args, call.kwargs)
                            status = TaskStatus.SUCCEEDED
                        except Exception as exc:
                            error = ErrorInfo(
                                type=type(exc).__name__,
                                message=str(exc),
                                traceback="".join(traceback.format_exception(exc)),
                            )
                            status = TaskStatus.FAILED
                finally:
                    self._limiter.release()
                    self._running -= 1
                    duration = trio.current_time() - started
                    self._durations.append(duration)
                if deadline.cancelled_caught or started + duration >= deadline.deadline:
                    status = TaskStatus.TIMED_OUT
        finally:
            if slot.scope.cancel_called:  # also covers a thread that returned after cancel()
                status = TaskStatus.CANCELLED
            if status is not TaskStatus.SUCCEEDED:
                value = None
            if status is not TaskStatus.FAILED:
                error = None
            slot.result = TaskResult(
                status=status, value=value, error=error, duration_s=duration, index=slot.index
            )
            self._counts[status] += 1
            self._pending.discard(slot)
            slot.done.set()


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout}")
    return timeout
