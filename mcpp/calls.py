"""Calling a step function that may be sync or async: the one rule, in one place.

A callable is *async* when it is a coroutine function, or an object whose ``__call__`` is one
(:func:`inspect.iscoroutinefunction` also sees through :func:`functools.partial`). From a trio
task, :func:`call` awaits an async callable in the event loop and runs any other in a worker
thread, so the loop stays free. Code already in a worker thread (a pool worker's runner) asks
:func:`is_async` and hops into the loop for an async callable itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

__all__ = ["call", "is_async"]


def is_async(fn: Callable[..., Any]) -> bool:
    """True if calling ``fn`` returns an awaitable to await in the event loop."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def call(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    abandon_on_cancel: bool = False,
) -> Any:
    """Return ``fn(*args, **kwargs)``: awaited if ``fn`` is async, else run in a trio thread.

    ``abandon_on_cancel``: on cancellation, stop waiting for a sync ``fn``'s thread (it runs on,
    unwatched, until it returns: for a process that is about to be ended anyway); by default a
    sync call keeps running and is waited for. Raises whatever ``fn`` raises.
    """
    import trio

    if is_async(fn):
        return await fn(*args, **(kwargs or {}))
    return await trio.to_thread.run_sync(
        partial(fn, *args, **(kwargs or {})), abandon_on_cancel=abandon_on_cancel
    )
