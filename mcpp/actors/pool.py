"""Pool mode: long-lived worker actors fed over one stream each, with adaptive batches.

Every ready step for a worker (up to :data:`MAX_BATCH`) goes out in one ``StartBatch``; a
worker has at most :data:`MAX_BATCHES` batches outstanding, so few messages are ever in
flight (tractor's stream buffers hold 64). A worker runs its steps one at a time and streams
results back as each finishes (``ResultBatch`` of what piled up while it sent), so a long
step never holds back the result of a short one that finished before it.

A worker whose process dies is replaced; the step it was running fails (or retries, as its
policy says) and the steps it held but had not started go back to the ready queue. A step that
passes its timeout gets its worker killed (a step on a worker shares its event loop and cannot
be interrupted) and is recorded as timed out.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import tractor
import trio

from mcpp import protocol
from mcpp.actors import step as step_endpoint
from mcpp.actors.launch import (
    STEP_MODULES,
    ProcessHandle,
    child_process,
    process_death,
    stop_actor,
)
from mcpp.protocol import ErrorInfo, StartStep, StepCancelled, StepFailed, StepStarted

if TYPE_CHECKING:
    from mcpp.actors.coordinator import Coordinator

__all__ = ["MAX_BATCH", "MAX_BATCHES", "Plan", "Pool", "Requeue", "Worker"]

MAX_BATCHES = 2
MAX_BATCH = 500


class Requeue(msgspec.Struct, frozen=True):
    """A step given back unstarted (its worker died): it goes back to the ready queue."""

    step: str


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
        self.ended: str | None = None  # "timed_out" or "cancelled": why the pool killed it
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
    """``size`` worker actors serving one coordinator."""

    def __init__(self, coordinator: Coordinator, size: int) -> None:
        self.coordinator = coordinator
        self.workers = [Worker(i) for i in range(size)]
        self.closing = False
        self.all_ready = trio.Event()
        self.scope = trio.CancelScope()

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
        self.closing = True
        for worker in self.workers:
            if worker.held and worker.process is not None and worker.process.poll() is None:
                worker.ended = "cancelled"
                worker.process.kill()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run every worker (replacing dead ones) until cancelled."""
        with self.scope:
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(self.keep, worker)
                task_status.started()

    async def keep(self, worker: Worker) -> None:
        """Keep ``worker`` alive: run it, and start a new process each time one dies."""
        while not self.closing:
            await self.serve(worker)

    def give_back(self, worker: Worker) -> None:
        """After a worker died: fail the step it ran, requeue the ones it had not started."""
        process = worker.process
        deliver = self.coordinator.deliver
        duration = time.perf_counter() - worker.started_at if worker.current else 0.0
        # A worker runs its steps in the order it got them: the first one it holds may be
        # running even if its StepStarted had not arrived (it may even be why the worker died).
        current = worker.current or next(iter(worker.held), None)
        for step_id, start in list(worker.held.items()):
            if step_id not in worker.held:  # a follower forgotten with its failed upstream
                continue
            if step_id != current:
                deliver(Requeue(step_id))
            elif worker.ended == "cancelled":
                deliver(
                    StepCancelled(
                        step=step_id,
                        attempt=start.attempt,
                        reason=self.coordinator.cancel_reason or "cancelled",
                        duration_s=duration,
                    )
                )
            elif worker.ended == "timed_out":
                limit = self.coordinator.steps[step_id].timeout
                error = ErrorInfo(
                    type="StepTimeout", message=f"step {step_id!r} timed out after {limit:g} s"
                )
                deliver(
                    StepFailed(
                        step=step_id,
                        attempt=start.attempt,
                        error=error,
                        duration_s=duration,
                        timed_out=True,
                    )
                )
            else:
                assert process is not None
                message = process_death(process.returncode, process.pid).replace(
                    "step process", f"worker process ({worker.name})"
                )
                error = ErrorInfo(type="ProcessDied", message=message)
                deliver(
                    StepFailed(
                        step=step_id, attempt=start.attempt, error=error, duration_s=duration
                    )
                )
        worker.held.clear()
        worker.batches.clear()
        worker.current = None
        worker.deadline = None
        worker.ended = None
        worker.outbox_send, worker.outbox = trio.open_memory_channel[tuple[StartStep, ...]](
            math.inf
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
                    async with (
                        portal.open_context(step_endpoint.serve) as (ctx, _pid),
                        ctx.open_stream() as stream,
                    ):
                        tasks.start_soon(self.feed, worker, stream)
                        worker.ready = True
                        if all(w.ready for w in self.workers):
                            self.all_ready.set()
                        self.coordinator.deliver(None)  # wake: capacity
                        await self.read(worker, stream)
            finally:
                worker.ready = False
                await stop_actor(portal, process)

    async def feed(self, worker: Worker, stream: Any) -> None:
        """Send the worker's batches in order."""
        secret = self.coordinator.run_msg.secret
        async for starts in worker.outbox:
            await stream.send(protocol.encode(protocol.StartBatch(secret=secret, steps=starts)))

    async def read(self, worker: Worker, stream: Any) -> None:
        """Route the worker's results: starts become events, outcomes go to the coordinator."""
        coordinator = self.coordinator
        async for raw in stream:
            message = protocol.from_step.decode(raw)
            items = message.results if isinstance(message, protocol.ResultBatch) else (message,)
            for item in items:
                if isinstance(item, StepStarted):
                    worker.current = item.step
                    worker.started_at = time.perf_counter()
                    limit = coordinator.steps[item.step].timeout
                    worker.deadline = None if limit is None else trio.current_time() + limit
                    worker.timer.deadline = worker.deadline or math.inf
                    coordinator.emit(item)
                elif isinstance(item, protocol.Heartbeat):
                    continue
                else:
                    worker.finished(item.step)
                    coordinator.deliver(item)

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
