"""The supervisor's side of the actor tree: the root actor and the coordinator actor.

:func:`open_run` is the one door from the rest of mcpp into tractor: it starts a root actor with
a registry address of its own (tractor's shared default port lets unrelated runs crash each
other), starts the coordinator actor, hands it the run and yields a :class:`RunChannel` of
events. When the block exits, every actor process of the run is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import msgspec
import trio

from mcpp import protocol, spill
from mcpp.actors import contain, coordinate, tractor
from mcpp.actors.launch import child_process, process_death, stop_actor
from mcpp.errors import ClusterError, RunError
from mcpp.protocol import CancelRun, RunWorkflow
from mcpp.workflow.spec import WorkflowSpec

__all__ = ["RunChannel", "free_port", "inside_actor", "open_run"]

LOOPBACK = "127.0.0.1"
COORDINATOR_MODULES = ["mcpp.actors.coordinate"]
# mcpp reports every failure itself; tractor's own console log would repeat expected ones
# (a cancelled step context) as errors. Its 'runtime' and 'transport' levels would also print
# the run secret, so they must never be enabled.
TRACTOR_LOGLEVEL = "critical"


def free_port() -> int:
    """Return a TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def inside_actor() -> bool:
    """True in a process that tractor started (a coordinator, step or worker actor)."""
    actor = tractor.current_actor(err_on_no_runtime=False)
    return actor is not None and not actor.is_arbiter


def remote_error(exc: BaseException) -> str:
    """The real type and message of an error boxed by tractor (its last traceback line)."""
    msgdata = getattr(exc, "msgdata", None)
    if isinstance(msgdata, dict) and isinstance(msgdata.get("tb_str"), str):
        lines = [line for line in str(msgdata["tb_str"]).strip().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return f"{type(exc).__name__}: {exc}"


class RunChannel:
    """Events of one run, and the way to cancel it."""

    def __init__(self, ctx: Any, stream: Any, spec: WorkflowSpec) -> None:
        self.ctx = ctx
        self.stream = stream
        self.spills = spill.Releaser({step.id: step.depends_on for step in spec.steps})

    async def cancel(self, reason: str) -> None:
        """Ask the coordinator to cancel every running step and skip the rest."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send(protocol.encode(CancelRun(reason=reason)))

    async def events(self) -> AsyncIterator[protocol.Event]:
        """Yield decoded events until ``RunFinished`` (included); heartbeats are not events.
        A large result that travelled as a reference to its file is mapped first
        (:func:`mcpp.spill.materialize`): a ``StepSucceeded`` yielded holds the encoded result.
        The file is removed once every step that takes the result has ended
        (:class:`mcpp.spill.Releaser`).

        Raises RunError if the coordinator fails (naming its error) or its process dies first
        (ClusterError, a RunError, when it could not reach its Dask cluster), ProtocolError on
        a bad message.
        """
        async for raw in self.stream:
            message = protocol.to_supervisor.decode(raw)
            items = message.events if isinstance(message, protocol.EventBatch) else (message,)
            for item in items:
                if isinstance(item, protocol.Heartbeat | protocol.EventBatch):
                    continue
                if isinstance(item, protocol.StepSucceeded) and spill.is_ref(item.result):
                    ref = item.result
                    item = msgspec.structs.replace(item, result=spill.materialize(ref))
                    self.spills.mapped(item.step, ref)
                ended = ended_for_good(item)
                if ended is not None:
                    self.spills.finished(ended)
                yield item
                if isinstance(item, protocol.RunFinished):
                    return
        try:
            await self.ctx.result()
        except Exception as exc:
            text = remote_error(exc)
            msgdata = getattr(exc, "msgdata", None)
            if isinstance(msgdata, dict) and msgdata.get("type_str") == "ClusterError":
                raise ClusterError(text.partition(": ")[2] or text) from None
            raise RunError(f"the coordinator failed: {text}") from exc
        raise RunError("the coordinator closed the run without finishing it")


def ended_for_good(event: protocol.Event) -> str | None:
    """The step ``event`` ends for good (no further attempt follows), or None."""
    if isinstance(event, protocol.StepSucceeded | protocol.StepSkipped | protocol.StepCancelled):
        return event.step
    if isinstance(event, protocol.StepFailed) and not event.will_retry:
        return event.step
    return None


def run_error_in(exc: BaseException) -> RunError | None:
    """The first RunError in ``exc`` or, for an exception group, in its members."""
    if isinstance(exc, RunError):
        return exc
    for member in getattr(exc, "exceptions", ()):
        found = run_error_in(member)
        if found is not None:
            return found
    return None


@asynccontextmanager
async def open_run(run: RunWorkflow) -> AsyncIterator[RunChannel]:
    """Start the actor tree for ``run`` and yield its RunChannel.

    Raises RunError if the coordinator cannot start, fails or its process dies: one RunError,
    not the group of boxed errors tractor gathers around it.
    """
    try:
        async with open_tree(run) as channel:
            yield channel
    except Exception as exc:
        found = run_error_in(exc)
        if found is None or found is exc:
            raise
        raise found from None


@asynccontextmanager
async def open_tree(run: RunWorkflow) -> AsyncIterator[RunChannel]:
    """:func:`open_run` without the error unboxing.

    The run gets a private folder for the files its actors share (``TMPDIR/mcpp-run-RUN_ID``):
    the coordinator makes it (0700) and removes it, also when it exits for a dead supervisor;
    this removes it too, in case the coordinator died. Its spill folder (:mod:`mcpp.spill`,
    large results) is made by the coordinator too, but removed here, after the last event is
    read; the coordinator removes it only when it exits for a dead supervisor. In a process that
    :func:`mcpp.actors.contain.become_subreaper` made a subreaper (the CLI's supervisor), every
    child but the coordinator is an orphan of the run and is ended, and nothing of the run is
    left when this returns.
    """
    run_dir = os.path.join(tempfile.gettempdir(), f"mcpp-run-{run.run_id}")
    spill_dir = spill.folder_for(run.run_id)
    try:
        run = msgspec.structs.replace(run, run_dir=run_dir, spill_dir=spill_dir)
        async with open_actors(run) as channel:
            yield channel
    finally:
        with trio.CancelScope(shield=True):  # a second Ctrl-C stops waiting, not cleaning
            if contain.is_subreaper():
                await trio.to_thread.run_sync(contain.end_descendants)
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(spill_dir, ignore_errors=True)


@asynccontextmanager
async def open_actors(run: RunWorkflow) -> AsyncIterator[RunChannel]:
    """Start the root actor and the coordinator for ``run``; yield its RunChannel."""
    # Every connection of the run proves this key (never sent, never on a command line).
    tractor._state.set_auth_key(protocol.new_secret())
    async with (
        tractor.open_root_actor(
            arbiter_addr=(LOOPBACK, free_port()),
            name="mcpp-supervisor",
            start_method="trio",
            loglevel=TRACTOR_LOGLEVEL,
        ),
        tractor.open_nursery() as nursery,
    ):
        portal = await nursery.start_actor("mcpp-coordinator", enable_modules=COORDINATOR_MODULES)
        process = child_process(nursery, portal)
        died = False
        try:
            async with trio.open_nursery() as watch_nursery:

                async def watch() -> None:
                    nonlocal died
                    await process.wait()
                    died = True
                    watch_nursery.cancel_scope.cancel()

                watch_nursery.start_soon(watch)
                if contain.is_subreaper():
                    watch_nursery.start_soon(contain.sweep, lambda: {process.pid})
                async with (
                    portal.open_context(coordinate.coordinate) as (ctx, _pid),
                    ctx.open_stream() as stream,
                ):
                    await stream.send(protocol.encode(run))
                    yield RunChannel(ctx, stream, run.spec)
                watch_nursery.cancel_scope.cancel()
        finally:
            await stop_actor(portal, process)
        if died:
            death = process_death(process.returncode, process.pid, "coordinator process")
            raise RunError(f"the coordinator died: {death}")
