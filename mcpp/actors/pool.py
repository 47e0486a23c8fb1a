"""Pool mode: long-lived worker actors fed over one stream each, with adaptive batches.

Every ready step for a worker (up to :data:`MAX_BATCH`) goes out in one ``StartBatch``; a
worker has at most :data:`MAX_BATCHES` batches outstanding, so few messages are ever in
flight (tractor's stream buffers hold 64). A worker runs its steps one at a time and streams
results back as each finishes (``ResultBatch`` of what piled up while it sent), so a long
step never holds back the result of a short one that finished before it.

A worker whose process dies is replaced. Its ledger (:class:`mcpp.actors.runner.Ledger`) names
the step it was running: that step alone fails (or retries, as its policy says); every other
step it held and had not reported goes back to the ready queue without counting an attempt.
A step that passes its timeout makes its worker end the step's processes and exit (a step on
a worker shares its process and cannot be interrupted); the pool's own watchdog kills a worker
whose step is still running :data:`BACKSTOP` seconds later. A worker that sends nothing for
:data:`~mcpp.actors.launch.LIVENESS` seconds (its runtime stopped) is killed as unresponsive.
The processes a killed worker's step started re-parent to the coordinator, which ends them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
import trio

from mcpp import protocol
from mcpp.actors import contain, tractor
from mcpp.actors import step as step_endpoint
from mcpp.actors.launch import (
    LIVENESS,
    STEP_MODULES,
    ProcessHandle,
    child_process,
    process_death,
    stop_actor,
)
from mcpp.actors.runner import Ledger
from mcpp.protocol import (
    ErrorInfo,
    Retiring,
    StartStep,
    StepCancelled,
    StepFailed,
    StepStarted,
    StepSucceeded,
)

__all__ = [
    "MAX_BATCH",
    "MAX_BATCHES",
    "Outcome",
    "Plan",
    "Pool",
    "PoolFactory",
    "PoolHost",
    "Requeue",
    "Worker",
]

MAX_BATCHES = 2
MAX_BATCH = 500
BACKSTOP = contain.GRACE + 1.0  # past a step's timeout, if its worker did not exit itself


class Requeue(msgspec.Struct, frozen=True):
    """A step given back unstarted (its worker died): it goes back to the ready queue."""

    step: str


Outcome = StepSucceeded | StepFailed | StepCancelled | Requeue | None
"""What a run's steps report to its coordinator; ``None`` only wakes it (capacity changed)."""


class PoolHost(Protocol):
    """What a :class:`Pool` needs from the run it serves (the coordinator, or a test's fake)."""

    @property
    def run_dir(self) -> str | None:
        """The run's private folder, where workers keep their ledgers (``None``: no ledgers)."""

    @property
    def cancel_reason(self) -> str | None:
        """Why the run is being cancelled, or ``None`` while it is not."""

    def deliver(self, outcome: Outcome) -> None:
        """Take a step's outcome (or a wake-up); called from the pool's tasks, never blocks."""

    def emit(self, event: StepStarted) -> None:
        """Pass an event on to the supervisor."""

    def timeout_of(self, step_id: str) -> float | None:
        """The timeout of ``step_id`` in seconds, or ``None``."""

    def unchain(self, step_id: str) -> None:
        """Never send ``step_id`` as a chain follower again (its worker died under it)."""


class Worker:
    """One worker actor's bookkeeping on the coordinator's side."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"worker:{index}"
        self.ready = False
        self.outbox_send, self.outbox = trio.open_memory_channel[tuple[StartStep, ...]](math.inf)
        self.batches: deque[set[str]] = deque()
        self.held: dict[str, StartStep] = {}
        self.current: str | None = None
        self.started_at = 0.0
        self.deadline: float | None = None
        self.timer = trio.CancelScope()  # the watchdog's: its deadline is the step's
        self.silence = trio.CancelScope()  # the liveness check's: moves on with each message
        # Why the pool ended it: "timed_out", "cancelled", "unresponsive" or "retired".
        self.ended: str | None = None
        self.process: ProcessHandle | None = None

    @property
    def can_take(self) -> bool:
        """True if the worker is up and has fewer than MAX_BATCHES batches outstanding."""
        return self.ready and len(self.batches) < MAX_BATCHES

    def finished(self, step_id: str) -> None:
        """Forget ``step_id``: its outcome arrived."""
        self.held.pop(step_id, None)
        if self.current == step_id:
            self.current = None
            self.deadline = None
            self.timer.deadline = math.inf
        while self.batches:
            self.batches[0].discard(step_id)
            if self.batches[0]:
                break
            self.batches.popleft()


class Pool:
    """``size`` worker actors serving one run (``host``)."""

    def __init__(self, host: PoolHost, size: int) -> None:
        self.host = host
        self.workers = [Worker(i) for i in range(size)]
        self.all_ready = trio.Event()
        self._closing = False
        self._scope = trio.CancelScope()

    def capacity(self) -> list[Worker]:
        """Workers that can take a batch now, least loaded first (none until every worker has
        started once, so the first steps spread over all of them)."""
        if not self.all_ready.is_set():
            return []
        return sorted((w for w in self.workers if w.can_take), key=lambda w: len(w.held))

    def share(self, ready: int) -> int:
        """How many of ``ready`` steps one worker gets in a batch: an even split, at most
        :data:`MAX_BATCH` (so a huge fan-out never sits in the coordinator and the workers'
        buffers all at once)."""
        return max(1, min(MAX_BATCH, math.ceil(ready / len(self.workers))))

    def assign(self, worker: Worker, starts: list[StartStep]) -> None:
        """Send ``starts`` to ``worker`` as one batch."""
        worker.batches.append({start.step for start in starts})
        for start in starts:
            worker.held[start.step] = start
        worker.outbox_send.send_nowait(tuple(starts))

    def cancel_all(self) -> None:
        """Stop every running step: kill the workers holding steps and replace none."""
        self._closing = True
        for worker in self.workers:
            if worker.held and worker.process is not None and worker.process.poll() is None:
                worker.ended = "cancelled"
                worker.process.kill()

    def close(self) -> None:
        """Stop :meth:`run` now: the run is over, the workers' graceful stop need not delay it."""
        self._closing = True
        self._scope.cancel()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run every worker (replacing dead ones) until :meth:`close`."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(self.keep, worker)
                task_status.started()

    async def keep(self, worker: Worker) -> None:
        """Keep ``worker`` alive: run it, and start a new process each time one dies."""
        while not self._closing:
            await self.serve(worker)

    def give_back(self, worker: Worker) -> None:
        """After a worker died: fail the step it ran, requeue the ones it had not reported."""
        process = worker.process
        assert process is not None
        ledger = Ledger.read(self.host.run_dir, process.pid)
        running = ledger[1] if ledger is not None and ledger[0] != Ledger.DONE else None
        timed_out = worker.ended == "timed_out" or (
            ledger is not None and ledger[0] == Ledger.TIMED_OUT
        )
        deliver = self.host.deliver
        duration = time.perf_counter() - worker.started_at if worker.current else 0.0
        for step_id, start in list(worker.held.items()):
            if step_id not in worker.held:  # a follower forgotten with its failed upstream
                continue
            if step_id != running:
                deliver(Requeue(step_id))
            elif start.after is not None and start.after in worker.held:
                # A follower whose upstream's success was lost with the worker: both run
                # again, the follower on its own, so that its own outcome can be recorded.
                self.host.unchain(step_id)
                deliver(Requeue(step_id))
            elif worker.ended == "cancelled":
                reason = self.host.cancel_reason or "cancelled"
                deliver(
                    StepCancelled(
                        step=step_id, attempt=start.attempt, reason=reason, duration_s=duration
                    )
                )
            else:
                deliver(self.failure(worker, process, start, duration, timed_out=timed_out))
        worker.held.clear()
        worker.batches.clear()
        worker.current = None
        worker.deadline = None
        worker.ended = None
        worker.outbox_send, worker.outbox = trio.open_memory_channel[tuple[StartStep, ...]](
            math.inf
        )

    def failure(
        self,
        worker: Worker,
        process: ProcessHandle,
        start: StartStep,
        duration: float,
        *,
        timed_out: bool,
    ) -> StepFailed:
        """The failure of ``start``, the step ``worker`` was running when it ended."""
        role = f"worker process ({worker.name})"
        if timed_out:
            error = ErrorInfo(
                type="StepTimeout",
                message=f"step {start.step!r} timed out after {start.timeout:g} s",
            )
        elif worker.ended == "unresponsive":
            message = (
                f"{role} {process.pid} stopped answering (no heartbeat for {LIVENESS:g} s): killed"
            )
            error = ErrorInfo(type="Unresponsive", message=message)
        else:
            error = ErrorInfo(
                type="ProcessDied", message=process_death(process.returncode, process.pid, role)
            )
        return StepFailed(
            step=start.step,
            attempt=start.attempt,
            error=error,
            duration_s=duration,
            timed_out=timed_out,
        )

    async def serve(self, worker: Worker) -> None:
        """One lifetime of a worker process: start it, feed it, read its results."""
        async with tractor.open_nursery() as nursery:
            portal = await nursery.start_actor(worker.name, enable_modules=STEP_MODULES)
            process = worker.process = child_process(nursery, portal)
            try:
                async with trio.open_nursery() as tasks:

                    async def watch() -> None:
                        await process.wait()
                        worker.ready = False
                        self.give_back(worker)  # now: tearing down can take 0.5 s more
                        tasks.cancel_scope.cancel()

                    tasks.start_soon(watch)
                    tasks.start_soon(self.watchdog, worker, process)
                    tasks.start_soon(self.liveness, worker, process)
                    async with (
                        portal.open_context(step_endpoint.serve) as (ctx, _pid),
                        ctx.open_stream() as stream,
                    ):
                        tasks.start_soon(self.feed, worker, stream)
                        worker.ready = True
                        if all(w.ready for w in self.workers):
                            self.all_ready.set()
                        self.host.deliver(None)  # wake: capacity
                        await self.read(worker, stream)
            finally:
                worker.ready = False
                await stop_actor(portal, process)

    async def feed(self, worker: Worker, stream: Any) -> None:
        """Send the worker's batches in order."""
        run_dir = self.host.run_dir
        async for starts in worker.outbox:
            batch = protocol.StartBatch(steps=starts, run_dir=run_dir)
            await stream.send(protocol.encode(batch))

    async def read(self, worker: Worker, stream: Any) -> None:
        """Route the worker's results: starts become events, outcomes go to the coordinator."""
        host = self.host
        async for raw in stream:
            worker.silence.deadline = trio.current_time() + LIVENESS
            message = protocol.from_step.decode(raw)
            items = message.results if isinstance(message, protocol.ResultBatch) else (message,)
            for item in items:
                if isinstance(item, StepStarted):
                    worker.current = item.step
                    worker.started_at = time.perf_counter()
                    limit = host.timeout_of(item.step)
                    worker.deadline = (
                        None if limit is None else trio.current_time() + limit + BACKSTOP
                    )
                    worker.timer.deadline = worker.deadline or math.inf
                    host.emit(item)
                elif isinstance(item, protocol.Heartbeat):
                    continue
                elif isinstance(item, Retiring):
                    worker.ended = "retired"
                    worker.ready = False
                    item_process = worker.process
                    if item_process is not None:
                        item_process.kill()
                else:
                    worker.finished(item.step)
                    host.deliver(item)

    async def watchdog(self, worker: Worker, process: ProcessHandle) -> None:
        """Kill the worker when its current step passes its timeout (``worker.timer``)."""
        while True:
            with trio.CancelScope() as worker.timer:
                worker.timer.deadline = worker.deadline or math.inf
                await trio.sleep_forever()
            if worker.deadline is not None and trio.current_time() >= worker.deadline:
                worker.ended = "timed_out"
                process.kill()
                return

    async def liveness(self, worker: Worker, process: ProcessHandle) -> None:
        """Kill the worker when it has sent nothing for LIVENESS seconds (not a heartbeat)."""
        with trio.CancelScope(deadline=trio.current_time() + LIVENESS) as worker.silence:
            await trio.sleep_forever()
        if process.poll() is None:
            worker.ended = "unresponsive"
            process.kill()


PoolFactory = Callable[[PoolHost, int], Pool]
"""Make the pool of ``size`` workers serving a run: :class:`Pool` itself, or a test's fake."""


class Plan:
    """One round of dispatch: split the ready steps evenly over the workers that have room."""

    def __init__(self, pool: Pool | None, ready: int) -> None:
        self.pool = pool
        self.workers = pool.capacity() if pool is not None else []
        share = pool.share(ready) if pool is not None else 0
        self.room = [share] * len(self.workers)
        self.batches: list[list[StartStep]] = [[] for _ in self.workers]
        self.turn = 0

    def has_room(self) -> bool:
        """True while some worker can take one more step in this round."""
        return self.turn < len(self.workers)

    def add(self, start: StartStep, followers: Sequence[StartStep] = ()) -> Worker:
        """Put ``start`` and its ``followers`` (which must run on the same worker, after it)
        in the current worker's batch; return that worker."""
        worker = self.workers[self.turn]
        self.batches[self.turn].append(start)
        self.batches[self.turn].extend(followers)
        self.room[self.turn] -= 1
        if not self.room[self.turn]:
            self.turn += 1
        return worker

    def send(self) -> None:
        """Send every non-empty batch."""
        if self.pool is None:
            return
        for worker, batch in zip(self.workers, self.batches, strict=True):
            if batch:
                self.pool.assign(worker, batch)
