"""A pool worker's step runner: one thread runs the worker's steps in order.

The worker's event loop stays free while a step runs, so it keeps reading batches and sends
each report (``StepStarted``, then the outcome) as soon as it exists; reports that pile up while
a send is under way leave together in one ``ResultBatch``. Sync steps run in the runner thread;
async steps run in the worker's event loop while the runner thread waits for them.
"""

from __future__ import annotations

import inspect
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from mcpp import protocol
from mcpp.protocol import StartStep, StepFailed, StepStarted, StepSucceeded

__all__ = ["START_DELAY", "BatchRunner"]

START_DELAY = 0.002


class BatchRunner:
    """Run submitted steps one at a time in a daemon thread; stream reports with ``send``."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], error_info: Any) -> None:
        self.send = send
        self.error_info = error_info
        self.token = trio.lowlevel.current_trio_token()
        self.inbox: queue.SimpleQueue[StartStep] = queue.SimpleQueue()
        self.reports: deque[Any] = deque()
        self.wake = trio.Event()
        self.wake_pending = False
        self.pid = os.getpid()
        threading.Thread(target=self.work, name="mcpp-step-runner", daemon=True).start()

    def submit(self, start: StartStep) -> None:
        """Queue ``start`` to run after everything submitted before it."""
        self.inbox.put(start)

    def report(self, item: Any) -> None:
        """From the runner thread: hand ``item`` to the sender, waking it if it sleeps."""
        self.reports.append(item)
        if not self.wake_pending:
            self.wake_pending = True
            self.token.run_sync_soon(self.wake.set)

    async def flush(self) -> None:
        """Send reports as they come, batching what piles up during a send. Runs forever.

        A lone ``StepStarted`` waits up to :data:`START_DELAY` for the step's outcome, so a
        short step costs one message, not two (nothing needs to know of a start sooner).
        """
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            self.wake_pending = False
            if all(isinstance(item, StepStarted) for item in self.reports):
                with trio.move_on_after(START_DELAY):
                    await self.wake.wait()
                self.wake = trio.Event()
                self.wake_pending = False
            items = []
            while self.reports:
                items.append(self.reports.popleft())
            if items:
                batch = protocol.ResultBatch(results=tuple(items))
                await self.send(protocol.encode(batch))

    def work(self) -> None:
        """The runner thread: run each submitted step and report its start and outcome."""
        from mcpp.targets import resolve

        functions: dict[str, Callable[..., Any]] = {}
        kept: dict[str, bytes] = {}  # results kept for a follower (StartStep.keep)
        while True:
            start = self.inbox.get()
            upstream = None
            if start.after is not None:
                upstream = kept.pop(start.after, None)
                if upstream is None:  # its upstream did not succeed here: not ours to run
                    continue
            self.report(
                StepStarted(step=start.step, attempt=start.attempt, pid=self.pid, at=time.time())
            )
            began = time.perf_counter()
            try:
                fn = functions.get(start.target)
                if fn is None:
                    fn = functions[start.target] = resolve(
                        start.target, import_paths=start.import_paths, main_path=start.main_path
                    )
                kwargs = protocol.decode_value(start.kwargs)
                if start.after is not None and upstream is not None:
                    kwargs[start.after] = protocol.decode_value(upstream)
                if inspect.iscoroutinefunction(fn):
                    value = trio.from_thread.run(partial(fn, **kwargs), trio_token=self.token)
                else:
                    value = fn(**kwargs)
                result = protocol.encode_value(value, step=start.step)
            except Exception as exc:
                self.report(
                    StepFailed(
                        step=start.step,
                        attempt=start.attempt,
                        error=self.error_info(exc),
                        duration_s=time.perf_counter() - began,
                    )
                )
            else:
                if start.keep:
                    kept[start.step] = bytes(result)
                self.report(
                    StepSucceeded(
                        step=start.step,
                        attempt=start.attempt,
                        result=result,
                        duration_s=time.perf_counter() - began,
                    )
                )
