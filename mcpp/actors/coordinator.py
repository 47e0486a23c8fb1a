"""The coordinator actor: holds the DAG, starts ready steps, applies the failure policy.

The supervisor opens :func:`coordinate` as a tractor context and sends one ``RunWorkflow``;
the coordinator streams events back (``StepStarted``, ``StepSucceeded``, ``StepFailed``,
``StepSkipped``, ``StepCancelled`` and finally ``RunFinished``). A ``CancelRun``, or the
supervisor's side of the stream closing, cancels every running step and skips the rest.

Scheduling is ready-set, never level by level: a step starts as soon as its own dependencies
succeeded and a slot (``max_concurrent``, resource pools) is free.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import trio

from mcpp import protocol
from mcpp.actors import contain, tractor
from mcpp.actors.launch import run_isolated
from mcpp.actors.parentwatch import on_exit, watch_parent
from mcpp.actors.pool import Plan, Pool, Requeue, Worker
from mcpp.actors.scheduler import ReadyQueue, Slots, retry_delay, should_retry
from mcpp.actors.spawner import Spawner
from mcpp.actors.tractor import _spawn
from mcpp.cache.step import StepCache
from mcpp.dag import Graph, StepState
from mcpp.errors import ProtocolError
from mcpp.protocol import (
    CancelRun,
    EventBatch,
    RunFinished,
    RunWorkflow,
    StartStep,
    StepCancelled,
    StepFailed,
    StepSkipped,
    StepSucceeded,
)
from mcpp.workflow.spec import StepSpec

__all__ = ["Coordinator", "coordinate"]

Send = Callable[[bytes], Awaitable[None]]
EVENT_DELAY = 0.005
MAX_FOLLOWERS = 16
Outcome = StepSucceeded | StepFailed | StepCancelled | Requeue | None


class Coordinator:
    """Drive one run: schedule ready steps, record outcomes, emit events.

    Outcomes of every kind of step (per-step actors, pool workers, retry timers) go through
    :meth:`deliver`, which applies them one at a time and starts what can start. Events leave
    in batches: whatever piles up while one batch is sent goes in the next.
    """

    def __init__(self, run: RunWorkflow, send: Send) -> None:
        self.run_msg = run
        self.spec = run.spec
        self.send = send
        self.graph = Graph({step.id: step.depends_on for step in self.spec.steps})
        self.state = self.graph.run_state(completed=run.completed)
        self.results: dict[str, msgspec.Raw] = dict(run.completed)
        self.uses_left = {s: len(self.graph.dependents(s)) for s in self.graph.steps}
        self.queue = ReadyQueue(self.spec, self.graph)
        self.steps = self.queue.steps
        # Must a pop look past the best ready step? Only if steps differ in what they need.
        self.scan = bool(self.spec.resources) or (
            self.spec.actors == "pool" and any(s.isolate for s in self.spec.steps)
        )
        cpus = os.cpu_count() or 1
        self.slots = Slots(self.spec.max_concurrent or cpus, self.spec.resources)
        self.pool: Pool | None = None
        if self.spec.actors == "pool":
            size = min(self.spec.workers or cpus, self.spec.max_concurrent or cpus)
            self.pool = Pool(self, size)
        self.attempts: dict[str, int] = {}
        self.cache = StepCache(self.spec, run.identities, run.cache_path)
        self.scopes: dict[str, trio.CancelScope] = {}
        self.retrying: set[str] = set()
        # Followers handed to a worker before their upstream succeeded, and the reverse link.
        self.following: dict[str, tuple[str, Worker]] = {}
        self.follower: dict[str, str] = {}
        self.unchained: set[str] = set()  # never sent as followers again (their worker died)
        self.cancel_reason: str | None = None
        self.cancel_cause: str | None = None
        self.events: list[Any] = []
        self.flushed = trio.Event()
        self.run_over = trio.Event()
        self.events_ready = trio.Event()
        self.pending: deque[Outcome] = deque()
        self.delivering = False
        self.idle = trio.Event()
        self.nursery: trio.Nursery | None = None

    def emit(self, event: Any) -> None:
        """Queue one event for the supervisor."""
        self.events.append(event)
        self.events_ready.set()

    async def flush_events(self) -> None:
        """Send queued events in batches until the run is over and every event is sent.

        After the first event of a batch it waits up to :data:`EVENT_DELAY` for more: the
        supervisor only records and shows them, so fewer, larger batches cost the run nothing.
        """
        while not self.run_over.is_set():
            await self.events_ready.wait()
            with trio.move_on_after(EVENT_DELAY):
                await self.run_over.wait()
            self.events_ready = trio.Event()
            await self.send_events()
        await self.send_events()  # what came while the last batch was being sent
        self.flushed.set()

    async def send_events(self) -> None:
        """Send every queued event now, as one batch."""
        if self.events:
            batch, self.events = self.events, []
            await self.send(protocol.encode(EventBatch(events=tuple(batch))))

    def cancel(self, reason: str, cause: str | None = None) -> None:
        """Cancel every running step and let nothing new start.

        ``cause`` is the step whose failure stopped the run (fail_fast), named by the skips.
        """
        if self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        self.cancel_cause = cause
        for scope in self.scopes.values():
            scope.cancel()
        if self.pool is not None:
            self.pool.cancel_all()
        self.deliver(None)

    async def run(self) -> str:
        """Run to the end; return the run status (succeeded, failed or cancelled)."""
        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self.flush_events)
            if self.pool is not None:
                await nursery.start(self.pool.run)
            self.deliver(None)
            await self.idle.wait()
            if self.cancel_reason is not None and self.cancel_cause is None:
                status = "cancelled"
            elif all(s == StepState.SUCCEEDED for s in self.state.states().values()):
                status = "succeeded"
            else:
                status = "failed"
            self.run_over.set()
            self.events_ready.set()
            await self.flushed.wait()
            finished = RunFinished(status=status, duration_s=time.perf_counter() - began)
            await self.send(protocol.encode(finished))
            # The result is out; the workers' graceful stop need not delay it.
            if self.pool is not None:
                self.pool.closing = True
                self.pool.scope.cancel()
        return status

    def deliver(self, outcome: Outcome) -> None:
        """Apply ``outcome`` (``None`` only wakes) and start what can start now.

        Every producer (a pool worker's reader, a per-step task, a retry timer) calls this
        directly: no hop through another task. A call made while one is under way (from
        :meth:`fill` or :meth:`apply`) is queued and handled by the call under way.
        """
        self.pending.append(outcome)
        if self.delivering:
            return
        self.delivering = True
        try:
            while self.pending:
                while self.pending:
                    self.apply(self.pending.popleft())
                self.fill()
        finally:
            self.delivering = False
        if not self.state.is_active():
            self.idle.set()

    def collect_ready(self) -> None:
        """Queue the steps that became ready, but for followers already on a worker."""
        for step_id in self.state.get_ready():
            if step_id in self.following:  # its upstream succeeded: it runs on the worker
                upstream, _worker = self.following.pop(step_id)
                self.follower.pop(upstream, None)
            else:
                self.queue.push(step_id)

    def fill(self) -> None:
        """Queue newly ready steps and start as many as the slots and workers allow."""
        self.collect_ready()
        if self.cancel_reason is not None:
            self.skip_unstarted()
            return
        plan = Plan(self.pool, len(self.queue))

        def startable(step: StepSpec) -> bool:
            if self.pool is not None and not step.isolate:
                return plan.has_room() and self.slots.can_start(step, slot=False)
            return self.slots.can_start(step)

        while self.queue:
            step = self.queue.pop(startable, scan=self.scan)
            if step is None:
                break
            if self.cached(step):
                continue
            pooled = self.pool is not None and not step.isolate
            self.slots.take(step, slot=not pooled)
            attempt = self.attempts[step.id] = self.attempts.get(step.id, 0) + 1
            start = self.start_message(step, attempt)
            if pooled:
                followers = self.followers(step) if not self.queue else []
                if followers:
                    start = msgspec.structs.replace(start, keep=True)
                worker = plan.add(start, followers)
                for follower in followers:
                    assert follower.after is not None
                    self.following[follower.step] = (follower.after, worker)
                    self.follower[follower.after] = follower.step
            else:
                self.start_isolated(step, start)
        plan.send()

    def followers(self, step: StepSpec) -> list[StartStep]:
        """The chain of steps that can run on the same worker right after ``step``.

        Each is the only dependent of the one before and depends on nothing else, is not yet
        ready, and needs nothing the worker cannot give it (no resource, cache or own process).
        The worker passes each its upstream's result itself, sparing a round trip through the
        coordinator per link (a chain's hop). Only used when nothing else is waiting, so no
        ready step is passed over.
        """
        chain: list[StartStep] = []
        current = step
        while len(chain) < MAX_FOLLOWERS:
            dependents = self.graph.dependents(current.id)
            if len(dependents) != 1:
                break
            nxt = self.steps[dependents[0]]
            if (
                nxt.depends_on != (current.id,)
                or nxt.isolate
                or nxt.uses
                or nxt.cache is not False
                or nxt.id in self.attempts
                or nxt.id in self.unchained
                or self.state.state(nxt.id) is not StepState.PENDING
            ):
                break
            self.attempts[nxt.id] = 1
            start = self.start_message(nxt, 1, after=current.id)
            if chain:
                chain[-1] = msgspec.structs.replace(chain[-1], keep=True)
            chain.append(start)
            current = nxt
        return chain

    def forget_followers(self, step_id: str) -> None:
        """``step_id`` did not succeed: its followers will not run on their worker."""
        follower = self.follower.pop(step_id, None)
        while follower is not None:
            _upstream, worker = self.following.pop(follower)
            worker.finished(follower)
            self.attempts.pop(follower, None)
            follower = self.follower.pop(follower, None)

    def cached(self, step: StepSpec) -> bool:
        """Look ``step`` up in the result cache once; on a hit, report it done and return True."""
        if not self.cache.enabled or step.id in self.attempts:
            return False
        upstream = {u: self.results[u] for u in step.depends_on}
        _key, hit = self.cache.lookup(step.id, step.args, upstream)
        if hit is None:
            return False
        self.attempts[step.id] = 0
        self.deliver(
            StepSucceeded(
                step=step.id, attempt=0, result=msgspec.Raw(hit), duration_s=0.0, cached=True
            )
        )
        return True

    def start_message(self, step: StepSpec, attempt: int, after: str | None = None) -> StartStep:
        """Build the StartStep for ``attempt``: arguments plus every upstream result, but for
        ``after``, whose result the worker passes on itself (a chain follower)."""
        kwargs: dict[str, Any] = dict(step.args)
        for upstream in step.depends_on:
            if upstream != after:
                kwargs[step.inputs.get(upstream, upstream)] = self.results[upstream]
        return StartStep(
            version=protocol.PROTOCOL_VERSION,
            run_id=self.run_msg.run_id,
            step=step.id,
            attempt=attempt,
            target=step.run,
            kwargs=protocol.encode_value(kwargs, step=step.id),
            import_paths=self.spec.import_paths,
            main_path=self.spec.main_path,
            after=after,
            after_name=None if after is None else step.inputs.get(after),
            timeout=step.timeout,
        )

    def start_isolated(self, step: StepSpec, start: StartStep) -> None:
        """Run one attempt of ``step`` in an actor process of its own."""
        assert self.nursery is not None
        scope = self.scopes[step.id] = trio.CancelScope()
        self.nursery.start_soon(self.run_isolated, step, start, scope)

    async def run_isolated(self, step: StepSpec, start: StartStep, scope: trio.CancelScope) -> None:
        """Task: run ``start`` in its own actor; hand the outcome to the loop once known."""
        began = time.perf_counter()
        reported = False

        def report(outcome: Outcome) -> None:
            nonlocal reported
            reported = True
            self.deliver(outcome)

        with scope:
            await run_isolated(step, start, self.emit_async, report)
        if not reported:
            report(
                StepCancelled(
                    step=step.id,
                    attempt=start.attempt,
                    reason=self.cancel_reason or "cancelled",
                    duration_s=time.perf_counter() - began,
                )
            )

    async def emit_async(self, event: Any) -> None:
        """:meth:`emit` for callers that await it."""
        self.emit(event)

    async def retry_later(self, step: StepSpec, delay: float, scope: trio.CancelScope) -> None:
        """Task: wait ``delay`` seconds, then put ``step`` back in the ready queue."""
        with scope:
            await trio.sleep(delay)
        if scope.cancelled_caught:
            self.deliver(
                StepCancelled(
                    step=step.id,
                    attempt=self.attempts[step.id],
                    reason=self.cancel_reason or "cancelled",
                )
            )
        else:
            self.deliver(Requeue(step.id))

    def apply(self, outcome: Outcome) -> None:
        """Record an outcome and emit the events that follow from it."""
        if outcome is None:
            return
        step = self.steps[outcome.step]
        pooled = self.pool is not None and not step.isolate
        self.scopes.pop(step.id, None)
        if step.id in self.following:
            if isinstance(outcome, Requeue):  # its worker died before its upstream succeeded
                upstream, _worker = self.following.pop(step.id)
                self.follower.pop(upstream, None)
                self.attempts.pop(step.id, None)
                return
            self.collect_ready()  # its upstream's success came in this same delivery
        match outcome:
            case Requeue():
                if self.state.state(step.id) is not StepState.RUNNING:
                    return  # skipped or waiting meanwhile: nothing to run again
                if step.id in self.retrying:  # its retry delay is over
                    self.retrying.discard(step.id)
                else:  # its worker died before it started: not an attempt
                    self.slots.give_back(step, slot=not pooled)
                    self.attempts[step.id] -= 1
                self.queue.push(step.id)
                return
            case StepSucceeded():
                if not outcome.cached:  # a cache hit took no slot
                    self.slots.give_back(step, slot=not pooled)
                    self.cache.store(step.id, self.cache.key(step.id), outcome.result)
                self.state.done(step.id)
                if self.uses_left[step.id]:
                    self.results[step.id] = outcome.result
                self.emit(outcome)
            case StepFailed():
                self.forget_followers(step.id)
                self.slots.give_back(step, slot=not pooled)
                if self.cancel_reason is None and should_retry(
                    step, outcome.attempt, outcome.error.type
                ):
                    delay = retry_delay(step, outcome.attempt)
                    self.emit(msgspec.structs.replace(outcome, will_retry=True, retry_in_s=delay))
                    assert self.nursery is not None
                    scope = self.scopes[step.id] = trio.CancelScope()
                    self.retrying.add(step.id)
                    self.nursery.start_soon(self.retry_later, step, delay, scope)
                    return
                skipped = self.state.fail(step.id)
                self.emit(outcome)
                self.skip(skipped)
                if self.spec.on_failure == "fail_fast":
                    self.cancel(f"fail_fast: step {step.id!r} failed", cause=step.id)
            case StepCancelled():
                self.forget_followers(step.id)
                if step.id not in self.retrying:
                    self.slots.give_back(step, slot=not pooled)
                self.retrying.discard(step.id)
                skipped = self.state.cancel(step.id)
                self.emit(outcome)
                self.skip(skipped)
        self.attempts.pop(step.id, None)  # it is done: keep no state per finished step
        self.consumed(step.id)

    def consumed(self, step_id: str) -> None:
        """``step_id`` is finished: drop upstream results that no step needs any more."""
        for upstream in self.graph.dependencies(step_id):
            self.uses_left[upstream] -= 1
            if not self.uses_left[upstream]:
                self.results.pop(upstream, None)

    def skip_unstarted(self) -> None:
        """Skip every step that has not started: queued ones and those not yet ready."""
        skipped: list[str] = []
        for step_id in self.queue.clear():
            skipped.append(step_id)
            skipped.extend(self.state.cancel(step_id))
        skipped.extend(self.state.skip_remaining(because=self.cancel_cause))
        for step_id in skipped:
            self.emit(StepSkipped(step=step_id, because=self.cancel_cause))
            self.consumed(step_id)

    def skip(self, steps: tuple[str, ...]) -> None:
        """Emit StepSkipped for ``steps``, naming the ancestor that caused each skip."""
        for step_id in steps:
            self.emit(StepSkipped(step=step_id, because=self.state.skipped_because(step_id)))
            self.consumed(step_id)


async def start_helpers() -> Spawner:
    """Start the fork server that step and worker actors are forked from; return it.

    A fresh interpreter spends ~0.3 s of CPU importing trio and the actor runtime; a fork of a
    server that has them imported starts in a few milliseconds. The server
    (:mod:`mcpp.actors.spawner`) is reachable only through its socketpair to this process and
    speaks msgpack: nothing is pickled. It is the only child the coordinator starts itself:
    any other child is an orphan of a dead actor. A forked actor's parent is the server, so it
    watches the server's parent to know when to exit (``mcpp.actors.parentwatch``).
    """
    spawner = await Spawner.start(["mcpp.actors.step"])
    _spawn.set_fork_server(spawner)
    _spawn.try_set_start_method("fork_server")
    return spawner


async def stop_helpers(spawner: Spawner) -> None:
    """End every process below the coordinator: the actors (if any is left), the fork server
    (its socket closed), then whatever is left."""
    await trio.to_thread.run_sync(partial(contain.end_descendants, keep={spawner.pid}))
    _spawn.set_fork_server(None)
    await spawner.aclose()
    await trio.to_thread.run_sync(contain.end_descendants)


@tractor.context
async def coordinate(ctx: tractor.Context) -> None:
    """Run the workflow of the first message on the stream; stream its events back.

    Only the coordinator's parent (the supervisor) may open it, else ProtocolError; its first
    message must be a ``RunWorkflow``.
    The coordinator is a child subreaper: an actor's orphans re-parent to it, and it ends them
    (:func:`mcpp.actors.contain.sweep`); when it is done, no process below it is left.
    """
    watch_parent()
    contain.become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor alone handles Ctrl-C
    if ctx.chan is not tractor.current_actor()._parent_chan:
        raise ProtocolError("refused: the coordinator serves only its parent")
    await ctx.started(os.getpid())
    async with ctx.open_stream() as opened:
        stream: Any = opened
        run = protocol.to_coordinator.decode(await stream.receive())
        if not isinstance(run, RunWorkflow):
            raise ProtocolError(f"expected RunWorkflow, got {type(run).__name__}")
        if run.run_dir is not None:
            on_exit(partial(shutil.rmtree, run.run_dir, ignore_errors=True))
        spawner = await start_helpers()
        try:
            await drive(run, stream, frozenset({spawner.pid}))
        finally:
            with trio.CancelScope(shield=True):
                await stop_helpers(spawner)


async def drive(run: RunWorkflow, stream: Any, helpers: frozenset[int]) -> None:
    """Run ``run`` to its end, listening for ``CancelRun`` and sweeping orphans meanwhile."""
    coordinator = Coordinator(run, stream.send)

    async def listen() -> None:
        async for raw in stream:
            message = protocol.to_coordinator.decode(raw)
            if isinstance(message, CancelRun):
                coordinator.cancel(message.reason)
        coordinator.cancel("the supervisor closed the run")

    with coordinator.cache:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            nursery.start_soon(contain.sweep, lambda: helpers)
            await coordinator.run()
            nursery.cancel_scope.cancel()
