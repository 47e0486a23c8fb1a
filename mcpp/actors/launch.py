"""One step attempt in its own actor process: spawn, start, watch, time out, tear down.

tractor 0.1.0a5 hangs a parent whose child is SIGKILLed mid-call, so every conversation with a
step actor runs beside a watcher of the child's process that ends the conversation the moment
the process dies. A timed-out attempt is cancelled, and its process is killed if it has not
exited after :data:`GRACE` seconds (a busy loop or a blocking C call ignores cancellation).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from mcpp import protocol
from mcpp.actors import step as step_endpoint
from mcpp.actors import tractor
from mcpp.errors import ProtocolError
from mcpp.protocol import (
    ErrorInfo,
    Heartbeat,
    StartStep,
    StepCancelled,
    StepFailed,
    StepStarted,
    StepSucceeded,
)
from mcpp.workflow.spec import StepSpec

__all__ = [
    "GRACE",
    "LIVENESS",
    "SPAWN_TIMEOUT",
    "STEP_MODULES",
    "Emit",
    "Launch",
    "Report",
    "attempt_in_scope",
    "process_death",
    "run_isolated",
]

GRACE = 1.5
LIVENESS = 5.0  # seconds without any message (heartbeats come every second) = unresponsive
SPAWN_TIMEOUT = 60.0
STEP_MODULES = ["mcpp.actors.step"]

Emit = Callable[[Any], Awaitable[None]]
Outcome = StepSucceeded | StepFailed
Report = Callable[[Outcome], None]
Launch = Callable[[StepSpec, StartStep, Emit, Report], Awaitable[None]]
"""Run one attempt of a step in a process of its own, as :func:`run_isolated`: ``emit`` its
``StepStarted``, ``report`` its outcome once (not if cancelled first)."""


async def attempt_in_scope(
    launch: Launch,
    step: StepSpec,
    start: StartStep,
    scope: trio.CancelScope,
    emit: Emit,
    report: Callable[[Any], None],
    reason: Callable[[], str],
) -> None:
    """Task: ``launch`` one attempt under ``scope``; ``report`` its outcome, or, when it was
    cancelled before it had one, a ``StepCancelled`` with ``reason()``. Reports exactly once."""
    began = time.perf_counter()
    reported = False

    def once(outcome: Outcome) -> None:
        nonlocal reported
        reported = True
        report(outcome)

    with scope:
        await launch(step, start, emit, once)
    if not reported:
        duration = time.perf_counter() - began
        report(
            StepCancelled(step=step.id, attempt=start.attempt, reason=reason(), duration_s=duration)
        )


def process_death(returncode: int | None, pid: int, role: str = "step process") -> str:
    """Describe how process ``pid`` (a ``role``) ended: the signal by name, or the exit code."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{role} {pid} was killed by {name}"
    return f"{role} {pid} exited with code {returncode} before the step finished"


class ProcessHandle:
    """The process of an actor, however it was started (a ``trio.Process`` for the 'trio'
    start method, a :class:`~mcpp.actors.spawner.parent.ForkedProcess` for 'fork_server'), behind
    one typed interface."""

    def __init__(self, process: Any) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        """The process id."""
        pid: int = self.process.pid
        return pid

    @property
    def returncode(self) -> int | None:
        """The exit code, negative for a signal; ``None`` while the process runs."""
        return self.poll()

    def poll(self) -> int | None:
        """The exit code if the process has ended, else ``None``."""
        code: int | None = self.process.poll()
        return code

    def kill(self) -> None:
        """Send SIGKILL (nothing happens if the process has ended)."""
        if self.poll() is None:
            self.process.kill()

    async def wait(self) -> int:
        """Wait until the process has ended; return its exit code."""
        code: int = await self.process.wait()
        return code


def child_process(nursery: Any, portal: Any) -> ProcessHandle:
    """Return the process of the actor behind ``portal`` (from a tractor internal)."""
    return ProcessHandle(nursery._children[portal.channel.uid][1])


async def stop_actor(portal: Any, process: ProcessHandle) -> None:
    """Ask the actor to cancel; kill its process if it is still alive after GRACE seconds."""
    with trio.CancelScope(shield=True):
        if process.poll() is None:
            with trio.move_on_after(GRACE):
                await portal.cancel_actor()
                await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()


async def converse(
    portal: Any,
    process: ProcessHandle,
    start: StartStep,
    limit: float | None,
    emit: Emit,
    report: Report,
) -> None:
    """Send ``start`` to a step actor; ``report`` its outcome the moment it is known.

    The outcome is the step's own, or a failure when its process dies, ``limit`` seconds (its
    timeout, counted from its start) pass, or the actor sends nothing (not even a heartbeat)
    for :data:`LIVENESS` seconds: its process is alive but its runtime stopped answering, and
    it is killed. ``report`` is called exactly once, before the conversation is torn down:
    tractor can take up to 0.5 s to give up on a dead actor's context, and the run should not
    wait for that.
    """
    began = time.perf_counter()
    reported = False
    silence = trio.CancelScope(deadline=trio.current_time() + LIVENESS)

    def finish(outcome: Outcome) -> None:
        nonlocal reported
        if not reported:
            reported = True
            report(outcome)

    def failure(error_type: str, message: str, *, timed_out: bool = False) -> StepFailed:
        return StepFailed(
            step=start.step,
            attempt=start.attempt,
            error=ErrorInfo(type=error_type, message=message),
            duration_s=time.perf_counter() - began,
            timed_out=timed_out,
        )

    started = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await process.wait()
            finish(failure("ProcessDied", process_death(process.returncode, process.pid)))
            nursery.cancel_scope.cancel()

        async def timer(seconds: float) -> None:
            await started.wait()
            await trio.sleep(seconds)
            message = f"step {start.step!r} timed out after {seconds:g} s"
            finish(failure("StepTimeout", message, timed_out=True))
            nursery.cancel_scope.cancel()

        async def liveness() -> None:
            with silence:  # its deadline moves on with every message
                await trio.sleep_forever()
            message = (
                f"step process {process.pid} stopped answering "
                f"(no heartbeat for {LIVENESS:g} s): killed"
            )
            finish(failure("Unresponsive", message))
            process.kill()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(liveness)
        if limit is not None:
            nursery.start_soon(timer, limit)
        async with (
            portal.open_context(step_endpoint.serve) as (ctx, _pid),
            ctx.open_stream() as stream,
        ):
            await stream.send(protocol.encode(start))
            async for raw in stream:
                silence.deadline = trio.current_time() + LIVENESS
                message = protocol.from_step.decode(raw)
                match message:
                    case StepStarted():
                        began = time.perf_counter()
                        started.set()
                        await emit(message)
                    case StepSucceeded() | StepFailed():
                        finish(message)
                        break
                    case Heartbeat():
                        pass
                    case _:
                        raise ProtocolError(
                            f"step {start.step!r}: unexpected {type(message).__name__}"
                        )
        nursery.cancel_scope.cancel()
    if not reported:
        finish(failure("ProtocolError", f"step process {process.pid} closed without an outcome"))


async def run_isolated(step: StepSpec, start: StartStep, emit: Emit, report: Report) -> None:
    """Run one attempt of ``step`` in a new actor process named ``step:ID``.

    ``report`` gets the outcome as soon as it is known (see :func:`converse`); it is not called
    if this is cancelled first. The process is gone when this returns, also when cancelled.
    """
    async with tractor.open_nursery() as nursery:
        portal = None
        with trio.move_on_after(SPAWN_TIMEOUT):
            portal = await nursery.start_actor(f"step:{step.id}", enable_modules=STEP_MODULES)
        if portal is None:
            error = ErrorInfo(
                type="SpawnError",
                message=f"step {step.id!r}: actor did not start within {SPAWN_TIMEOUT:g} s",
            )
            report(StepFailed(step=step.id, attempt=start.attempt, error=error, duration_s=0.0))
            return
        process = child_process(nursery, portal)
        try:
            await converse(portal, process, start, step.timeout, emit, report)
        finally:
            await stop_actor(portal, process)
