"""The coordinator's side of dask mode: the Dask client and the launch of each attempt.

:func:`open_dask` connects a Dask client (``distributed.Client``, its sync API driven from trio
through threads) to the run's scheduler, or first starts a throwaway local cluster
(:mod:`mcpp.cluster.local`) when no address is given, and yields a :class:`DaskRun` whose
``launch`` the coordinator uses instead of starting actor processes. When the block exits the
client is closed and the local cluster, if any, is gone.

Each attempt is one task (:func:`mcpp.cluster.task.run_attempt`), keyed by run, step and
attempt, submitted with ``retries=0`` (mcpp retries by its own policy), ``pure=False``, the
step's effective priority as Dask's ``priority`` and, for each resource pool it uses that some
worker declares as a Dask resource, ``resources={name: 1}``. ``max_concurrent`` and the pools'
sizes are enforced by the coordinator as in the other modes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from mcpp import protocol
from mcpp.actors.launch import Emit, Report
from mcpp.cluster.task import claim_name
from mcpp.dag import Graph
from mcpp.dag.heuristics import effective_priority
from mcpp.errors import ClusterError, ProtocolError, WorkflowError
from mcpp.protocol import ErrorInfo, StartStep, StepCancelled, StepFailed, StepStarted
from mcpp.protocol import StepSucceeded as Succeeded
from mcpp.workflow.spec import StepSpec, WorkflowSpec, check_scheduler

__all__ = [
    "CONNECT_TIMEOUT",
    "ENV",
    "DaskLauncher",
    "DaskRun",
    "open_dask",
    "scheduler_address",
]

ENV = "MCPP_DASK_SCHEDULER"
CONNECT_TIMEOUT = 5.0  # seconds to reach the scheduler
WORKERS_TIMEOUT = 10.0  # seconds for a scheduler without workers to get one
LOCAL_TIMEOUT = 60.0  # seconds for the local cluster to start
STOP_WAIT = 5.0  # seconds a cancelled attempt's task has to end its process and confirm
TIMEOUT_MARGIN = 5.0  # the worker enforces a timeout; the coordinator gives up this much later
WATCH_INTERVAL = 1.0  # how often the workers running attempts are looked for in the cluster

TaskOutcome = Succeeded | StepFailed | StepCancelled
_outcomes: protocol.Decoder[TaskOutcome] = protocol.Decoder(TaskOutcome, "dask task->coordinator")
Relayed = StepStarted | StepCancelled
_relayed: protocol.Decoder[Relayed] = protocol.Decoder(Relayed, "dask topic->coordinator")


def scheduler_address(spec: WorkflowSpec) -> str | None:
    """The scheduler ``spec`` names, else ``$MCPP_DASK_SCHEDULER``, else ``None`` (local).

    Raises WorkflowError naming the variable for an invalid address in it.
    """
    if spec.scheduler is not None:
        return spec.scheduler
    address = os.environ.get(ENV) or None
    if address is not None:
        check_scheduler(address, field=ENV)
    return address


@dataclass
class _Attempt:
    started: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    stopped: trio.Event = field(default_factory=trio.Event)  # a cancel's processes are gone
    lost: trio.Event = field(default_factory=trio.Event)  # its worker left the cluster
    start_message: StepStarted | None = None
    worker: str | None = None


class DaskLauncher:
    """Launch attempts as Dask tasks on ``client`` (a connected sync ``distributed.Client``).

    Must be made in the coordinator's trio thread; :meth:`launch` is the coordinator's
    ``Launch``.
    """

    def __init__(self, client: Any, run: protocol.RunWorkflow) -> None:
        self.client = client
        # Keys are unique per session: a resumed run's attempts are new tasks.
        self.prefix = f"mcpp-{run.run_id}-{secrets.token_hex(4)}"
        self.topic = self.prefix
        self.token = trio.lowlevel.current_trio_token()
        spec = run.spec
        graph = Graph({step.id: step.depends_on for step in spec.steps})
        self.priority = effective_priority(graph, {s.id: s.priority for s in spec.steps})
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        self.declared = {name for w in workers.values() for name in w.get("resources", {})}
        self.live: dict[tuple[str, int], _Attempt] = {}
        self.broken: ProtocolError | None = None
        client.subscribe_topic(self.topic, self._on_event)

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a Dask thread: run ``fn(*args)`` in the trio thread."""
        with suppress(trio.RunFinishedError):
            self.token.run_sync_soon(fn, *args)

    def _on_event(self, event: Any) -> None:
        """Dask's thread: a task relayed its attempt's start, or confirmed its cancel."""
        self._soon(self._relay, event)

    def _relay(self, event: Any) -> None:
        """A relayed event ``(time, [worker address, msgspec bytes])``; anything else on the
        run's topic is a protocol error that fails the run (:meth:`watch_workers` raises it)."""
        try:
            _at, (worker, raw) = event
            if not isinstance(worker, str):
                raise ProtocolError(f"expected a worker address, got {type(worker).__name__}")
            message = _relayed.decode(raw)
        except (ProtocolError, TypeError, ValueError) as exc:
            text = f"run topic {self.topic}: invalid event {event!r:.200}: {exc}"
            self.broken = ProtocolError(text)
            return
        attempt = self.live.get((message.step, message.attempt))
        if attempt is None:
            return
        if isinstance(message, StepCancelled):
            attempt.stopped.set()
        elif attempt.start_message is None:
            attempt.start_message = message
            attempt.worker = worker
            attempt.started.set()

    async def watch_workers(self) -> None:
        """Task: every :data:`WATCH_INTERVAL` seconds, mark the attempts whose worker has left
        the cluster (killed, lost) as lost: that attempt fails at once, whether or not Dask
        finds another worker to run its task again. Raises ProtocolError once an invalid
        event came on the run's topic."""
        while True:
            await trio.sleep(WATCH_INTERVAL)
            if self.broken is not None:
                raise self.broken
            if not any(a.worker for a in self.live.values()):
                continue
            try:
                info = await trio.to_thread.run_sync(self.client.scheduler_info, -1)
            except Exception:  # no answer now; a lost scheduler fails the futures themselves
                continue
            present = set(info.get("workers", {}))
            for attempt in self.live.values():
                if attempt.worker is not None and attempt.worker not in present:
                    attempt.lost.set()

    def _event(self, name: str) -> Any:
        from distributed import Event

        return Event(name, client=self.client)

    async def launch(self, step: StepSpec, start: StartStep, emit: Emit, report: Report) -> None:
        """Run one attempt of ``step`` as a Dask task; ``emit`` its start, ``report`` its outcome.

        ``report`` is not called if this is cancelled first; then the task is told to end the
        attempt's process, and this returns once it has (at most :data:`STOP_WAIT` seconds).
        """
        from mcpp.cluster.task import run_attempt

        key = f"{self.prefix}-{start.step}-{start.attempt}"
        attempt = self.live[(start.step, start.attempt)] = _Attempt()
        resources = {name: 1 for name in step.uses if name in self.declared} or None
        future = self.client.submit(
            run_attempt,
            protocol.encode(start),
            key,
            self.topic,
            key=key,
            pure=False,
            retries=0,
            priority=self.priority[step.id],
            resources=resources,
        )
        future.add_done_callback(lambda _f: self._soon(attempt.done.set))
        try:
            outcome = await self._wait(step, start, attempt, future, emit)
            if outcome is not None:
                report(outcome)
        finally:
            with trio.CancelScope(shield=True):
                await self._end(key, attempt, future)
                self.live.pop((start.step, start.attempt), None)

    async def _wait(
        self, step: StepSpec, start: StartStep, attempt: _Attempt, future: Any, emit: Emit
    ) -> Succeeded | StepFailed | None:
        """Wait for the task's outcome (or, past the timeout and a margin, give up on it)."""
        backstop: StepFailed | None = None
        async with trio.open_nursery() as nursery:

            async def started() -> None:
                nonlocal backstop
                await attempt.started.wait()
                assert attempt.start_message is not None
                await emit(attempt.start_message)
                if step.timeout is not None:
                    await trio.sleep(step.timeout + TIMEOUT_MARGIN)
                    message = (
                        f"step {step.id!r} timed out after {step.timeout:g} s "
                        f"(its Dask task did not end within {TIMEOUT_MARGIN:g} s more)"
                    )
                    error = ErrorInfo(type="StepTimeout", message=message)
                    backstop = StepFailed(
                        step=step.id,
                        attempt=start.attempt,
                        error=error,
                        duration_s=step.timeout + TIMEOUT_MARGIN,
                        timed_out=True,
                    )
                    nursery.cancel_scope.cancel()

            async def lost() -> None:
                await attempt.lost.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(started)
            nursery.start_soon(lost)
            await attempt.done.wait()
            nursery.cancel_scope.cancel()
        if backstop is not None:
            return backstop
        if attempt.lost.is_set() and not attempt.done.is_set():
            message = (
                f"the Dask worker {attempt.worker} running step {step.id!r} "
                f"(attempt {start.attempt}) was lost: it left the cluster"
            )
            return StepFailed(
                step=step.id,
                attempt=start.attempt,
                error=ErrorInfo(type="ProcessDied", message=message),
                duration_s=0.0,
            )
        outcome = await trio.to_thread.run_sync(self._result, start, future)
        return None if isinstance(outcome, StepCancelled) else outcome

    def _result(self, start: StartStep, future: Any) -> TaskOutcome:
        """A thread: the outcome the finished ``future`` holds.

        A task that did not return (its workers kept dying: ``KilledWorker``; it was cancelled
        or lost by the scheduler) is a failed attempt naming what Dask said.
        """
        try:
            data = future.result()
        except Exception as exc:  # KilledWorker, FutureCancelledError, a lost scheduler
            message = f"the Dask task of step {start.step!r} did not finish: {exc!r}"
            return StepFailed(
                step=start.step,
                attempt=start.attempt,
                error=ErrorInfo(type="ProcessDied", message=message),
                duration_s=0.0,
            )
        if not isinstance(data, bytes):
            raise ClusterError(f"the Dask task of step {start.step!r} returned {type(data)}")
        return _outcomes.decode(data)

    async def _end(self, key: str, attempt: _Attempt, future: Any) -> None:
        """After the attempt: stop its task if it still runs, forget it in Dask."""
        if not attempt.done.is_set():  # cancelled: the task ends the attempt's process
            await trio.to_thread.run_sync(self.client.cancel, future)
            if attempt.started.is_set() and not attempt.lost.is_set():
                with trio.move_on_after(STOP_WAIT):
                    await attempt.stopped.wait()
        future.release()
        await trio.to_thread.run_sync(lambda: self._event(claim_name(key)).clear())


@dataclass(frozen=True)
class DaskRun:
    """What the coordinator needs in dask mode: the spec to run (``max_concurrent`` defaults
    to the cluster's worker threads), the helper processes it must not sweep, the launch."""

    spec: WorkflowSpec
    helpers: frozenset[int]
    launch: Any
    address: str


def _connect(address: str) -> Any:
    """A thread: a sync Dask client connected to ``address`` with at least one worker."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no worker (waited {WORKERS_TIMEOUT:g} s)"
        ) from None
    return client


async def _watching(scope: trio.CancelScope, launcher: DaskLauncher) -> None:
    with scope:
        await launcher.watch_workers()


async def _start_local() -> tuple[trio.Process, str]:
    """Start :mod:`mcpp.cluster.local`; return it and its scheduler's address."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mcpp.cluster.local"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = b""
    with trio.move_on_after(LOCAL_TIMEOUT):
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(256)
            if not chunk:
                break
            line += chunk
    address = line.decode(errors="replace").strip()
    if not address:
        await _stop_local(process)
        raise ClusterError(f"the local Dask cluster did not start within {LOCAL_TIMEOUT:g} s")
    return process, address


async def _stop_local(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if process.stdin is not None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await process.stdin.aclose()
        with trio.move_on_after(15):
            await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def open_dask(run: protocol.RunWorkflow) -> AsyncIterator[DaskRun]:
    """Connect to the run's Dask cluster (or start a local one); yield the :class:`DaskRun`.

    Raises ClusterError, naming the address, when the scheduler cannot be reached within
    :data:`CONNECT_TIMEOUT` seconds or has no worker; WorkflowError for an invalid
    ``$MCPP_DASK_SCHEDULER``. Either is raised before any step starts.
    """
    try:
        address = scheduler_address(run.spec)
    except WorkflowError as exc:
        raise ClusterError(str(exc)) from None
    local: trio.Process | None = None
    if address is None:
        local, address = await _start_local()
    try:
        client = await trio.to_thread.run_sync(_connect, address)
        try:
            launcher = DaskLauncher(client, run)
            watching = trio.CancelScope()
            spec = run.spec
            if spec.max_concurrent is None:
                threads = await trio.to_thread.run_sync(client.nthreads)
                spec = msgspec.structs.replace(spec, max_concurrent=max(1, sum(threads.values())))
            helpers = frozenset({local.pid} if local is not None else ())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watching, watching, launcher)
                yield DaskRun(spec=spec, helpers=helpers, launch=launcher.launch, address=address)
                watching.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(client.close)
    finally:
        if local is not None:
            await _stop_local(local)
