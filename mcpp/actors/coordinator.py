"""The coordinator's policy: holds the DAG, starts ready steps, applies the failure policy.

:class:`Coordinator` runs one ``RunWorkflow`` and streams its events back (``StepStarted``,
``StepSucceeded``, ``StepFailed``, ``StepSkipped``, ``StepCancelled`` and finally
``RunFinished``); the actor around it is :mod:`mcpp.actors.coordinate`. Scheduling is
ready-set, never level by level: a step starts as soon as its own dependencies succeeded and a
slot (``max_concurrent``, resource pools) is free. It starts no process itself: isolated steps
go to its ``launch`` (:func:`mcpp.actors.launch.run_isolated`), pooled steps to its ``pool``
(:class:`mcpp.actors.pool.Pool`); tests pass fakes of both.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

import msgspec
import trio

from mcpp import protocol, steplog
from mcpp.actors.capture import with_stderr_tail
from mcpp.actors.chains import Chains
from mcpp.actors.inputs import Inputs
from mcpp.actors.launch import Launch, attempt_in_scope, run_isolated
from mcpp.actors.outbox import Outbox, Send
from mcpp.actors.pool import Outcome, Plan, Pool, PoolFactory, Requeue
from mcpp.actors.scheduler import ReadyQueue, Slots, retry_delay, should_retry
from mcpp.cache.step import StepCache
from mcpp.dag import Graph, StepState
from mcpp.protocol import (
    RunFinished,
    RunWorkflow,
    StartStep,
    StepCancelled,
    StepFailed,
    StepSkipped,
    StepSucceeded,
)
from mcpp.workflow.spec import StepSpec

__all__ = ["Coordinator"]


class Coordinator:
    """Drive one run: schedule ready steps, record outcomes, emit events.

    Outcomes of every kind of step (per-step actors, pool workers, retry timers) go through
    :meth:`deliver`, which applies them one at a time and starts what can start. Events leave
    through an :class:`~mcpp.actors.outbox.Outbox`, in batches.

    ``launch`` runs an isolated step's attempt; ``pool`` makes the pool in pool mode. Both
    default to the real ones, which start processes.
    """

    def __init__(
        self,
        run: RunWorkflow,
        send: Send,
        *,
        launch: Launch = run_isolated,
        pool: PoolFactory = Pool,
    ) -> None:
        spec = self._spec = run.spec
        self._run = run
        self._send = send
        self._launch = launch
        self._outbox = Outbox(send)
        self._graph = Graph({step.id: step.depends_on for step in spec.steps})
        self._state = self._graph.run_state(completed=run.completed)
        self._inputs = Inputs(run, self._graph)
        self._queue = ReadyQueue(spec, self._graph)
        self._steps = self._queue.steps
        # Must a pop look past the best ready step? Only if steps differ in what they need.
        self._needs_scan = bool(spec.resources) or (
            spec.actors == "pool" and any(s.isolate for s in spec.steps)
        )
        cpus = os.cpu_count() or 1
        self._slots = Slots(spec.max_concurrent or cpus, spec.resources)
        self._pool: Pool | None = None
        if spec.actors == "pool":
            self._pool = pool(self, min(spec.workers or cpus, spec.max_concurrent or cpus))
        self._cache = StepCache(spec, run.identities, run.cache_path)
        self._attempts: dict[str, int] = {}
        self._before = dict(run.attempts_before)  # attempts of earlier sessions (resume)
        self._scopes: dict[str, trio.CancelScope] = {}
        self._retrying: set[str] = set()
        self._chains = Chains(self._graph, self._steps)
        self._cancel_reason: str | None = None
        self._cancel_cause: str | None = None
        self._pending: deque[Outcome] = deque()
        self._delivering = False
        self._idle = trio.Event()
        self._nursery: trio.Nursery | None = None

    # --- what the pool sees (mcpp.actors.pool.PoolHost) ------------------------------------

    @property
    def run_dir(self) -> str | None:
        """The run's private folder (pool workers keep their ledgers there)."""
        return self._run.run_dir

    @property
    def cancel_reason(self) -> str | None:
        """Why the run is being cancelled, or ``None`` while it is not."""
        return self._cancel_reason

    def timeout_of(self, step_id: str) -> float | None:
        """The timeout of ``step_id`` in seconds, or ``None``."""
        return self._steps[step_id].timeout

    def unchain(self, step_id: str) -> None:
        """Never send ``step_id`` as a chain follower again."""
        self._chains.unchain(step_id)

    def emit(self, event: Any) -> None:
        """Queue one event for the supervisor."""
        self._outbox.add(event)

    # --- the run ----------------------------------------------------------------------------

    def cancel(self, reason: str, cause: str | None = None) -> None:
        """Cancel every running step and let nothing new start.

        ``cause`` is the step whose failure stopped the run (fail_fast), named by the skips.
        """
        if self._cancel_reason is not None:
            return
        self._cancel_reason = reason
        self._cancel_cause = cause
        for scope in self._scopes.values():
            scope.cancel()
        if self._pool is not None:
            self._pool.cancel_all()
        self.deliver(None)

    async def run(self) -> str:
        """Run to the end; return the run status (succeeded, failed or cancelled)."""
        began = time.perf_counter()
        with self._cache:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._outbox.run)
                if self._pool is not None:
                    await nursery.start(self._pool.run)
                self.deliver(None)
                await self._idle.wait()
                if self._cancel_reason is not None and self._cancel_cause is None:
                    status = "cancelled"
                elif all(s == StepState.SUCCEEDED for s in self._state.states().values()):
                    status = "succeeded"
                else:
                    status = "failed"
                await self._outbox.close()
                finished = RunFinished(status=status, duration_s=time.perf_counter() - began)
                await self._send(protocol.encode(finished))
                if self._pool is not None:
                    self._pool.close()  # the result is out: the workers' stop need not delay it
        return status

    def deliver(self, outcome: Outcome) -> None:
        """Apply ``outcome`` (``None`` only wakes) and start what can start now.

        Every producer (a pool worker's reader, a per-step task, a retry timer) calls this
        directly: no hop through another task. A call made while one is under way (from
        starting steps or applying an outcome) is queued and handled by the call under way.
        """
        self._pending.append(outcome)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                while self._pending:
                    self._apply(self._pending.popleft())
                self._fill()
        finally:
            self._delivering = False
        if not self._state.is_active():
            self._idle.set()

    # --- starting steps ---------------------------------------------------------------------

    def _pooled(self, step: StepSpec) -> bool:
        return self._pool is not None and not step.isolate

    def _collect_ready(self) -> None:
        """Queue the steps that became ready, but for followers already on a worker."""
        for step_id in self._state.get_ready():
            if step_id in self._chains:  # its upstream succeeded: it runs on the worker
                self._chains.unlink(step_id)
            else:
                self._queue.push(step_id)

    def _fill(self) -> None:
        """Queue newly ready steps and start as many as the slots and workers allow."""
        self._collect_ready()
        if self._cancel_reason is not None:
            self._skip_unstarted()
            return
        plan = Plan(self._pool, len(self._queue))

        def startable(step: StepSpec) -> bool:
            if self._pooled(step):
                return plan.has_room() and self._slots.can_start(step, slot=False)
            return self._slots.can_start(step)

        while self._queue:
            step = self._queue.pop(startable, scan=self._needs_scan)
            if step is None:
                break
            if self._cached(step):
                continue
            pooled = self._pooled(step)
            self._slots.take(step, slot=not pooled)
            before = self._before.get(step.id, 0)
            attempt = self._attempts[step.id] = self._attempts.get(step.id, before) + 1
            start = self._inputs.start(step, attempt)
            if pooled:
                # Only when nothing else waits, so that no ready step is passed over.
                followers = self._followers(step) if not self._queue else []
                if followers:
                    start = msgspec.structs.replace(start, keep=True)
                self._chains.link(followers, plan.add(start, followers))
            else:
                self._start_isolated(step, start)
        plan.send()

    def _followers(self, step: StepSpec) -> list[StartStep]:
        """The chain that can follow ``step`` on its worker (:meth:`Chains.followers`)."""

        def waiting(step_id: str) -> bool:
            pending = self._state.state(step_id) is StepState.PENDING
            return pending and step_id not in self._attempts

        followers = self._chains.followers(
            step,
            waiting=waiting,
            start=lambda nxt, after: self._inputs.start(nxt, self._first(nxt.id), after),
        )
        for follower in followers:
            self._attempts[follower.step] = follower.attempt
        return followers

    def _first(self, step_id: str) -> int:
        """The number of ``step_id``'s first attempt in this session (1 but after a resume)."""
        return self._before.get(step_id, 0) + 1

    def _forget_followers(self, step_id: str) -> None:
        """``step_id`` did not succeed: its followers will not run on their worker."""
        for follower in self._chains.forget(step_id):
            self._attempts.pop(follower, None)

    def _cached(self, step: StepSpec) -> bool:
        """Look ``step`` up in the result cache once; on a hit, report it done and return True."""
        if not self._cache.enabled or step.id in self._attempts:
            return False
        _key, hit = self._cache.lookup(step.id, step.args, self._inputs.upstream(step))
        if hit is None:
            return False
        self._attempts[step.id] = 0
        self.deliver(
            StepSucceeded(
                step=step.id, attempt=0, result=msgspec.Raw(hit), duration_s=0.0, cached=True
            )
        )
        return True

    def _start_isolated(self, step: StepSpec, start: StartStep) -> None:
        """Run one attempt of ``step`` in an actor process of its own."""
        assert self._nursery is not None
        scope = self._scopes[step.id] = trio.CancelScope()
        emit, reason = self._outbox.emit_async, lambda: self._cancel_reason or "cancelled"
        self._nursery.start_soon(
            attempt_in_scope, self._launch, step, start, scope, emit, self.deliver, reason
        )

    async def _retry_later(self, step: StepSpec, delay: float, scope: trio.CancelScope) -> None:
        """Task: wait ``delay`` seconds, then put ``step`` back in the ready queue."""
        with scope:
            await trio.sleep(delay)
        if scope.cancelled_caught:
            self.deliver(
                StepCancelled(
                    step=step.id,
                    attempt=self._attempts[step.id],
                    reason=self._cancel_reason or "cancelled",
                )
            )
        else:
            self.deliver(Requeue(step.id))

    # --- outcomes ---------------------------------------------------------------------------

    def _apply(self, outcome: Outcome) -> None:
        """Record an outcome and emit the events that follow from it."""
        if outcome is None:
            return
        step = self._steps[outcome.step]
        self._scopes.pop(step.id, None)
        if step.id in self._chains:
            if isinstance(outcome, Requeue):  # its worker died before its upstream succeeded
                self._chains.unlink(step.id)
                self._attempts.pop(step.id, None)
                return
            self._collect_ready()  # its upstream's success came in this same delivery
        match outcome:
            case Requeue():
                self._on_requeue(step)
            case StepSucceeded():
                self._on_succeeded(step, outcome)
            case StepFailed():
                self._on_failed(step, outcome)
            case StepCancelled():
                self._on_cancelled(step, outcome)

    def _on_requeue(self, step: StepSpec) -> None:
        """Its retry delay is over, or its worker died before it started (not an attempt)."""
        if self._state.state(step.id) is not StepState.RUNNING:
            return  # skipped or waiting meanwhile: nothing to run again
        if step.id in self._retrying:
            self._retrying.discard(step.id)
        else:
            self._slots.give_back(step, slot=not self._pooled(step))
            self._attempts[step.id] -= 1
        self._queue.push(step.id)

    def _on_succeeded(self, step: StepSpec, outcome: StepSucceeded) -> None:
        if not outcome.cached:  # a cache hit took no slot
            self._slots.give_back(step, slot=not self._pooled(step))
            self._cache.store(step.id, self._cache.key(step.id), outcome.result)
        self._state.done(step.id)
        self._inputs.record(step.id, outcome.result)
        self.emit(outcome)
        self._finished(step.id)

    def _on_failed(self, step: StepSpec, outcome: StepFailed) -> None:
        """Retry after a backoff if its policy says so; else fail it and skip its dependents
        (and with fail_fast, cancel the run)."""
        if not outcome.error.stderr_tail and self._run.log_dir is not None:
            # A failure its actor could not report (it died, timed out): the tail from its log.
            tail = steplog.stderr_tail(self._run.log_dir, step.id, outcome.attempt)
            outcome = with_stderr_tail(outcome, tail)
        self._forget_followers(step.id)
        self._slots.give_back(step, slot=not self._pooled(step))
        session_attempt = outcome.attempt - self._before.get(step.id, 0)
        retry = should_retry(step, session_attempt, outcome.error.type)
        if self._cancel_reason is None and retry:
            delay = retry_delay(step, session_attempt)
            self.emit(msgspec.structs.replace(outcome, will_retry=True, retry_in_s=delay))
            assert self._nursery is not None
            scope = self._scopes[step.id] = trio.CancelScope()
            self._retrying.add(step.id)
            self._nursery.start_soon(self._retry_later, step, delay, scope)
            return
        skipped = self._state.fail(step.id)
        self.emit(outcome)
        self._skip(skipped)
        if self._spec.on_failure == "fail_fast":
            self.cancel(f"fail_fast: step {step.id!r} failed", cause=step.id)
        self._finished(step.id)

    def _on_cancelled(self, step: StepSpec, outcome: StepCancelled) -> None:
        self._forget_followers(step.id)
        if step.id not in self._retrying:  # a retry timer took no slot
            self._slots.give_back(step, slot=not self._pooled(step))
        self._retrying.discard(step.id)
        skipped = self._state.cancel(step.id)
        self.emit(outcome)
        self._skip(skipped)
        self._finished(step.id)

    def _finished(self, step_id: str) -> None:
        """``step_id`` is done: keep no state for it, drop upstream results no step needs."""
        self._attempts.pop(step_id, None)
        self._inputs.consumed(step_id)

    def _skip_unstarted(self) -> None:
        """Skip every step that has not started: queued ones and those not yet ready."""
        skipped: list[str] = []
        for step_id in self._queue.clear():
            skipped.append(step_id)
            skipped.extend(self._state.cancel(step_id))
        skipped.extend(self._state.skip_remaining(because=self._cancel_cause))
        for step_id in skipped:
            self.emit(StepSkipped(step=step_id, because=self._cancel_cause))
            self._inputs.consumed(step_id)

    def _skip(self, steps: tuple[str, ...]) -> None:
        """Emit StepSkipped for ``steps``, naming the ancestor that caused each skip."""
        for step_id in steps:
            self.emit(StepSkipped(step=step_id, because=self._state.skipped_because(step_id)))
            self._inputs.consumed(step_id)
