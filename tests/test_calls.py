"""One rule for calling a step function that may be sync or async (mcpp/calls.py)."""

import threading
from functools import partial

from mcpp.calls import call, is_async


async def add(a: int, b: int = 0) -> int:
    return a + b


class AsyncCallable:
    async def __call__(self, a: int) -> int:
        return a * 2


def where(a: int) -> tuple[int, str]:
    return a, threading.current_thread().name


def test_async_functions_partials_and_async_callables_are_async() -> None:
    assert is_async(add)
    assert is_async(partial(add, 1))
    assert is_async(AsyncCallable())
    assert not is_async(where)
    assert not is_async(len)


async def test_an_async_function_is_awaited_with_its_arguments() -> None:
    assert await call(add, (1,), {"b": 2}) == 3
    assert await call(AsyncCallable(), (4,)) == 8


async def test_a_sync_function_runs_in_another_thread() -> None:
    value, thread = await call(where, kwargs={"a": 5})
    assert value == 5
    assert thread != threading.current_thread().name
