"""A pool worker's step runner: one thread runs the worker's steps in order.

The worker's event loop stays free while a step runs, so it keeps reading batches and sends
each report (``StepStarted``, then the outcome) as soon as it exists; reports that pile up while
a send is under way leave together in one ``ResultBatch``. Sync steps run in the runner thread;
async steps run in the worker's event loop while the runner thread waits for them.

Between steps the runner ends every process the step left behind, and puts back the
process-wide state it changed (:mod:`mcpp.actors.hygiene`). A :class:`Ledger` file in the run's
folder names the step that is running, so that if the worker dies its pool fails that step
alone and gives the others back. A watchdog thread enforces each step's timeout even when the
step blocks the event loop: it records the timeout in the ledger, ends the step's processes and
exits the worker.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import trio

from mcpp import protocol, spill
from mcpp.actors import contain
from mcpp.actors.capture import OutputCapture, with_stderr_tail
from mcpp.actors.hygiene import ProcessState, Unrestorable
from mcpp.batching import Batcher
from mcpp.calls import is_async
from mcpp.protocol import Retiring, StartStep, StepFailed, StepStarted, StepSucceeded

__all__ = ["EXIT_TIMED_OUT", "START_DELAY", "BatchRunner", "Kept", "Ledger"]

START_DELAY = 0.002
EXIT_TIMED_OUT = 75


class Kept:
    """A step's result kept on its worker for a follower (``StartStep.keep``).

    A ``str`` or ``bytes`` result is kept as the value itself: it is immutable and decoding
    its encoding gives an equal value of the same type, so the follower is handed it without
    reading the result back (for a large one, from its spill file). Any other result is kept
    encoded, and decoded afresh for the follower as in every other hand-over.
    """

    __slots__ = ("_encoded", "_value")

    def __init__(self, value: Any, encoded: msgspec.Raw) -> None:
        self._value = value if type(value) in (str, bytes) else None
        self._encoded = None if self._value is not None else bytes(encoded)

    def value(self) -> Any:
        """The result as the follower takes it. Raises what :func:`protocol.decode_value`
        raises for a result kept encoded."""
        return self._value if self._encoded is None else protocol.decode_value(self._encoded)


class Ledger:
    """A worker's record of the step it runs, in ``RUN_DIR/worker-PID``: one small file.

    States: ``R`` running, ``D`` between steps, ``T`` timed out (the worker is exiting).
    """

    RUNNING = b"R"
    DONE = b"D"
    TIMED_OUT = b"T"

    def __init__(self, run_dir: str | None, pid: int) -> None:
        self.fd: int | None = None
        if run_dir is not None:
            path = self.path(run_dir, pid)
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    @staticmethod
    def path(run_dir: str, pid: int) -> str:
        """The ledger file of worker ``pid``."""
        return os.path.join(run_dir, f"worker-{pid}")

    def write(self, state: bytes, step: str = "") -> None:
        """Record ``state`` for ``step`` (one ``pwrite``: a reader sees all of it or none)."""
        if self.fd is not None:
            name = step.encode()
            os.pwrite(self.fd, state + len(name).to_bytes(4, "big") + name, 0)

    @classmethod
    def read(cls, run_dir: str | None, pid: int) -> tuple[bytes, str] | None:
        """The last state and step recorded by worker ``pid``, or None; removes the file."""
        if run_dir is None:
            return None
        path = cls.path(run_dir, pid)
        try:
            with open(path, "rb") as file:
                data = file.read()
            os.unlink(path)
        except OSError:
            return None
        if len(data) < 5:
            return None
        size = int.from_bytes(data[1:5], "big")
        return data[:1], data[5 : 5 + size].decode(errors="replace")


def is_outcome(report: Any) -> bool:
    """A report that must not wait for more: anything but a ``StepStarted``."""
    return not isinstance(report, StepStarted)


class BatchRunner:
    """Run submitted steps one at a time in a daemon thread; stream reports with ``send``."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        error_info: Any,
        run_dir: str | None = None,
        capture: OutputCapture | None = None,
    ) -> None:
        self.send = send
        self.capture = capture
        self.error_info = error_info
        self.token = trio.lowlevel.current_trio_token()
        self.inbox: queue.SimpleQueue[StartStep] = queue.SimpleQueue()
        self.reports = Batcher(self.send_batch, delay=START_DELAY, urgent=is_outcome)
        self.pid = os.getpid()
        self.ledger = Ledger(run_dir, self.pid)
        self.state = ProcessState()
        self.state.snapshot_handlers()  # built in the event loop's thread, the main one
        self.clock = threading.Condition()
        self.deadline: tuple[str, float] | None = None
        threading.Thread(target=self.work, name="mcpp-step-runner", daemon=True).start()
        threading.Thread(target=self.watchdog, name="mcpp-step-watchdog", daemon=True).start()

    def submit(self, start: StartStep) -> None:
        """Queue ``start`` to run after everything submitted before it."""
        self.inbox.put(start)

    def report(self, item: Any) -> None:
        """From the runner thread: hand ``item`` to the sender."""
        self.reports.add_from_thread(item)

    async def flush(self) -> None:
        """Send reports as they come, batching what piles up during a send. Runs forever.

        A lone ``StepStarted`` waits up to :data:`START_DELAY` for the step's outcome, so a
        short step costs one message, not two (nothing needs to know of a start sooner).
        """
        await self.reports.run()

    async def send_reports(self) -> None:
        """Send every report made so far, as one batch."""
        await self.reports.send_now()

    async def send_batch(self, items: list[Any]) -> None:
        """Send ``items`` as one ``ResultBatch``."""
        await self.send(protocol.encode(protocol.ResultBatch(results=tuple(items))))

    def watchdog(self) -> None:
        """The watchdog thread: exit the worker when the running step passes its timeout.

        It runs apart from the event loop, so an async step that blocks the loop is stopped
        too. The ledger says which step timed out; the step's processes are ended first.
        """
        with self.clock:
            while True:
                if self.deadline is None:
                    self.clock.wait()
                    continue
                step, deadline = self.deadline
                left = deadline - time.monotonic()
                if left > 0:
                    self.clock.wait(left)
                    continue
                self.ledger.write(Ledger.TIMED_OUT, step)
                contain.end_descendants()
                os._exit(EXIT_TIMED_OUT)

    def set_deadline(self, start: StartStep | None) -> None:
        """Arm the watchdog for ``start`` (None: no step is running)."""
        with self.clock:
            if start is None or start.timeout is None:
                self.deadline = None
            else:
                self.deadline = (start.step, time.monotonic() + start.timeout)
                self.clock.notify()

    async def run_async(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Await an async step in the event loop; put back the signal handlers it changed.

        The reports made so far are sent first: an async step that blocks the loop would hold
        them back, and a worker killed meanwhile would lose them.
        """
        await self.send_reports()
        try:
            return await fn(**kwargs)
        finally:
            self.state.restore_handlers()

    def tidy(self) -> tuple[int, bool, tuple[str, ...]]:
        """After a step: end its processes, close its log, put back what it changed.

        Returns how many processes were ended, whether the worker must retire (something
        could not be put back), and the step's stderr tail.
        """
        ended = contain.end_descendants() if self.children.any() else 0
        tail = self.capture.end() if self.capture is not None else ()
        try:
            self.state.restore()
        except Unrestorable:
            return ended, True, tail
        return ended, False, tail

    def work(self) -> None:
        """The runner thread: run each submitted step and report its start and outcome."""
        from mcpp.workflow.targets import resolve

        self.children = contain.ChildWatch()
        functions: dict[str, Callable[..., Any]] = {}
        kept: dict[str, Kept] = {}  # results kept for a follower (StartStep.keep)
        while True:
            start = self.inbox.get()
            upstream = None
            if start.after is not None:
                upstream = kept.pop(start.after, None)
                if upstream is None:  # its upstream did not succeed here: not ours to run
                    continue
            self.ledger.write(Ledger.RUNNING, start.step)
            self.set_deadline(start)
            self.report(
                StepStarted(step=start.step, attempt=start.attempt, pid=self.pid, at=time.time())
            )
            began = time.perf_counter()
            if self.capture is not None:
                self.capture.begin(start)
            outcome: StepSucceeded | StepFailed
            try:
                fn = functions.get(start.target)
                if fn is None:
                    fn = functions[start.target] = resolve(
                        start.target, import_paths=start.import_paths, main_path=start.main_path
                    )
                kwargs = spill.decode_arguments(start.kwargs)
                if start.after is not None and upstream is not None:
                    kwargs[start.after_name or start.after] = upstream.value()
                if is_async(fn):
                    value = trio.from_thread.run(
                        partial(self.run_async, fn, kwargs), trio_token=self.token
                    )
                else:
                    value = fn(**kwargs)
                result = protocol.encode_result(value, step=start.step, spill_dir=start.spill_dir)
            except Exception as exc:
                outcome = StepFailed(
                    step=start.step,
                    attempt=start.attempt,
                    error=self.error_info(exc),
                    duration_s=time.perf_counter() - began,
                )
            else:
                if start.keep:
                    kept[start.step] = Kept(value, result)
                outcome = StepSucceeded(
                    step=start.step,
                    attempt=start.attempt,
                    result=result,
                    duration_s=time.perf_counter() - began,
                )
            self.set_deadline(None)
            ended, retire, tail = self.tidy()
            self.ledger.write(Ledger.DONE)
            if ended:
                outcome = msgspec.structs.replace(outcome, ended_processes=ended)
            outcome = with_stderr_tail(outcome, tail)
            self.report(outcome)
            if retire:
                reason = f"step {start.step!r} changed process state that cannot be restored"
                self.report(Retiring(pid=self.pid, reason=reason))
                return
