"""The coordinator actor: holds the DAG, starts ready steps, applies the failure policy.

The supervisor opens :func:`coordinate` as a tractor context and sends one ``RunWorkflow``;
the coordinator streams events back (``StepStarted``, ``StepSucceeded``, ``StepFailed``,
``StepSkipped``, ``StepCancelled`` and finally ``RunFinished``). A ``CancelRun``, or the
supervisor's side of the stream closing, cancels every running step and skips the rest.

Scheduling is ready-set, never level by level: a step starts as soon as its own dependencies
succeeded and a slot (``max_concurrent``, resource pools) is free.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import tractor
import trio

from mcpp import protocol
from mcpp.actors.launch import run_isolated
from mcpp.actors.parentwatch import watch_parent
from mcpp.actors.runtimevars import get_secret
from mcpp.dag import Graph, StepState
from mcpp.errors import ProtocolError
from mcpp.protocol import (
    CancelRun,
    RunFinished,
    RunWorkflow,
    StartStep,
    StepCancelled,
    StepFailed,
    StepSkipped,
    StepSucceeded,
)
from mcpp.scheduler import ReadyQueue, Slots, retry_delay, should_retry
from mcpp.spec import StepSpec

__all__ = ["Coordinator", "coordinate"]

Emit = Callable[[Any], Awaitable[None]]


class Coordinator:
    """Drive one run: schedule ready steps, record outcomes, emit events."""

    def __init__(self, run: RunWorkflow, emit: Emit) -> None:
        self.run_msg = run
        self.spec = run.spec
        self.emit_bytes = emit
        self.graph = Graph({step.id: step.depends_on for step in self.spec.steps})
        self.state = self.graph.run_state(completed=run.completed)
        self.results: dict[str, msgspec.Raw] = dict(run.completed)
        self.queue = ReadyQueue(self.spec, self.graph)
        self.slots = Slots(self.spec.max_concurrent or os.cpu_count() or 1, self.spec.resources)
        self.scopes: dict[str, trio.CancelScope] = {}
        self.cancel_reason: str | None = None
        self.cancel_cause: str | None = None
        self.outcomes_send, self.outcomes = trio.open_memory_channel[Any](math.inf)

    async def emit(self, message: protocol.Message) -> None:
        """Send one event to the supervisor."""
        await self.emit_bytes(protocol.encode(message))

    def cancel(self, reason: str, cause: str | None = None) -> None:
        """Cancel every running step and let nothing new start.

        ``cause`` is the step whose failure stopped the run (fail_fast), named by the skips.
        """
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancel_cause = cause
        for scope in self.scopes.values():
            scope.cancel()

    async def run(self) -> str:
        """Run to the end; return the run status (succeeded, failed or cancelled)."""
        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await self.fill(nursery)
            while self.state.is_active() or self.scopes:
                outcome = await self.outcomes.receive()
                await self.apply(outcome)
                await self.fill(nursery)
        if self.cancel_reason is not None and self.cancel_cause is None:
            status = "cancelled"
        elif all(s == StepState.SUCCEEDED for s in self.state.states().values()):
            status = "succeeded"
        else:
            status = "failed"
        await self.emit(RunFinished(status=status, duration_s=time.perf_counter() - began))
        return status

    async def fill(self, nursery: trio.Nursery) -> None:
        """Queue newly ready steps and start as many as the slots allow."""
        for step_id in self.state.get_ready():
            self.queue.push(step_id)
        if self.cancel_reason is not None:
            await self.skip_unstarted()
            return
        while self.queue:
            step = self.queue.pop(self.slots.can_start)
            if step is None:
                break
            self.slots.take(step)
            scope = trio.CancelScope()
            self.scopes[step.id] = scope
            nursery.start_soon(self.run_step, step, scope)

    def start_message(self, step: StepSpec, attempt: int) -> StartStep:
        """Build the StartStep for ``attempt``: arguments plus every upstream result."""
        kwargs: dict[str, Any] = dict(step.args)
        for upstream in step.depends_on:
            kwargs[upstream] = self.results[upstream]
        return StartStep(
            version=protocol.PROTOCOL_VERSION,
            secret=self.run_msg.secret,
            run_id=self.run_msg.run_id,
            step=step.id,
            attempt=attempt,
            target=step.run,
            kwargs=protocol.encode_value(kwargs, step=step.id),
            import_paths=self.spec.import_paths,
            main_path=self.spec.main_path,
        )

    async def run_step(self, step: StepSpec, scope: trio.CancelScope) -> None:
        """Run every attempt of ``step`` (retries with backoff) and report the outcome."""
        attempt = 0
        outcome: Any = None
        began = time.perf_counter()
        with scope:
            while True:
                attempt += 1
                outcome = await run_isolated(step, self.start_message(step, attempt), self.emit)
                if isinstance(outcome, StepFailed) and should_retry(
                    step, attempt, outcome.error.type
                ):
                    await self.emit(msgspec.structs.replace(outcome, will_retry=True))
                    await trio.sleep(retry_delay(step, attempt))
                    continue
                break
        if scope.cancelled_caught:
            outcome = StepCancelled(
                step=step.id,
                attempt=attempt,
                reason=self.cancel_reason or "cancelled",
                duration_s=time.perf_counter() - began,
            )
        await self.outcomes_send.send(outcome)

    async def apply(self, outcome: Any) -> None:
        """Record a finished step and emit the events that follow from it."""
        step = self.spec.step(outcome.step)
        del self.scopes[step.id]
        self.slots.give_back(step)
        match outcome:
            case StepSucceeded():
                self.state.done(step.id)
                self.results[step.id] = outcome.result
                await self.emit(outcome)
            case StepFailed():
                skipped = self.state.fail(step.id)
                await self.emit(outcome)
                await self.skip(skipped)
                if self.spec.on_failure == "fail_fast":
                    self.cancel(f"fail_fast: step {step.id!r} failed", cause=step.id)
            case StepCancelled():
                skipped = self.state.cancel(step.id)
                await self.emit(outcome)
                await self.skip(skipped)

    async def skip_unstarted(self) -> None:
        """Skip every step that has not started: queued ones and those not yet ready."""
        skipped: list[str] = []
        for step_id in self.queue.clear():
            skipped.append(step_id)
            skipped.extend(self.state.cancel(step_id))
        skipped.extend(self.state.skip_remaining(because=self.cancel_cause))
        for step_id in skipped:
            await self.emit(StepSkipped(step=step_id, because=self.cancel_cause))

    async def skip(self, steps: tuple[str, ...]) -> None:
        """Emit StepSkipped for ``steps``, naming the ancestor that caused each skip."""
        for step_id in steps:
            await self.emit(StepSkipped(step=step_id, because=self.state.skipped_because(step_id)))


@tractor.context  # type: ignore[untyped-decorator]
async def coordinate(ctx: tractor.Context) -> None:
    """Run the workflow of the first message on the stream; stream its events back.

    The first message must be a ``RunWorkflow`` with this run's secret, else ProtocolError.
    """
    watch_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor alone handles Ctrl-C
    secret = get_secret()
    await ctx.started(os.getpid())
    async with ctx.open_stream() as stream:
        run = protocol.to_coordinator.decode(await stream.receive())
        protocol.check_secret(run, secret)
        if not isinstance(run, RunWorkflow):
            raise ProtocolError(f"expected RunWorkflow, got {type(run).__name__}")
        coordinator = Coordinator(run, stream.send)

        async def listen() -> None:
            async for raw in stream:
                message = protocol.to_coordinator.decode(raw)
                protocol.check_secret(message, secret)
                if isinstance(message, CancelRun):
                    coordinator.cancel(message.reason)
            coordinator.cancel("the supervisor closed the run")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await coordinator.run()
            nursery.cancel_scope.cancel()
