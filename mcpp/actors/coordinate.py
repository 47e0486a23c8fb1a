"""The coordinator actor's endpoint: :func:`coordinate`, opened by the supervisor.

The supervisor opens :func:`coordinate` as a tractor context and sends one ``RunWorkflow``;
the :class:`~mcpp.actors.coordinator.Coordinator` runs it and streams its events back. A
``CancelRun``, or the supervisor's side of the stream closing, cancels every running step and
skips the rest. Around the run, this module owns what the actor process owns: the parent
check, the run's private folder, the fork server and the sweep of orphans.
"""

from __future__ import annotations

import os
import shutil
import signal
from functools import partial
from typing import Any

import msgspec
import trio

from mcpp import protocol, spill
from mcpp.actors import contain, tractor
from mcpp.actors.coordinator import Coordinator
from mcpp.actors.helpers import start_helpers, stop_helpers
from mcpp.actors.launch import Launch, run_isolated
from mcpp.actors.parentwatch import on_exit, watch_parent
from mcpp.errors import ProtocolError
from mcpp.protocol import CancelRun, RunWorkflow

__all__ = ["coordinate", "drive"]


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
        if run.run_dir is not None:  # the cleanup is registered first: nothing is ever left
            on_exit(partial(shutil.rmtree, run.run_dir, ignore_errors=True))
            os.mkdir(run.run_dir, 0o700)
        if run.spill_dir is not None:  # the supervisor removes it; this, if it died first
            on_exit(partial(shutil.rmtree, run.spill_dir, ignore_errors=True))
            os.mkdir(run.spill_dir, 0o700)
        if run.stored:  # earlier sessions' large results: copied in, never read here
            run = await trio.to_thread.run_sync(adopt_stored, run)
        try:
            if run.spec.actors == "dask":  # no actor is started: no fork server either
                await drive_on_dask(msgspec.structs.replace(run, spill_dir=None), stream)
                return
            spawner = await start_helpers()
            try:
                await drive(run, stream, frozenset({spawner.pid}))
            finally:
                with trio.CancelScope(shield=True):
                    await stop_helpers(spawner)
        finally:
            if run.run_dir is not None:
                shutil.rmtree(run.run_dir, ignore_errors=True)


def adopt_stored(run: RunWorkflow) -> RunWorkflow:
    """``run`` with each ``stored`` result among ``completed``: a reference to its copy in the
    spill folder (inline in dask mode, which has none). Raises OSError for a file that is gone
    (the run then fails before any step starts)."""
    folder = None if run.spec.actors == "dask" else run.spill_dir
    adopted = {step: spill.adopt(path, folder) for step, path in run.stored.items()}
    return msgspec.structs.replace(run, completed={**run.completed, **adopted}, stored={})


async def drive_on_dask(run: RunWorkflow, stream: Any) -> None:
    """:func:`drive` with each attempt a task on the run's Dask cluster (:mod:`mcpp.cluster`).

    Raises ClusterError before any step starts if the cluster cannot be reached. Nothing is
    left below the coordinator when this returns.
    """
    from mcpp.cluster.launcher import open_dask

    try:
        async with open_dask(run) as dask:
            dask_run = msgspec.structs.replace(run, spec=dask.spec)
            await drive(dask_run, stream, dask.helpers, launch=dask.launch)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(contain.end_descendants)


async def drive(
    run: RunWorkflow, stream: Any, helpers: frozenset[int], launch: Launch = run_isolated
) -> None:
    """Run ``run`` to its end, listening for ``CancelRun`` and sweeping orphans meanwhile.

    ``helpers`` are the coordinator's own children, which the sweep leaves alone; ``launch``
    runs an isolated attempt (an actor process, or a Dask task in dask mode).
    """
    coordinator = Coordinator(run, stream.send, launch=launch)

    async def listen() -> None:
        async for raw in stream:
            message = protocol.to_coordinator.decode(raw)
            if isinstance(message, CancelRun):
                coordinator.cancel(message.reason)
        coordinator.cancel("the supervisor closed the run")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        nursery.start_soon(contain.sweep, lambda: helpers)
        await coordinator.run()
        nursery.cancel_scope.cancel()
