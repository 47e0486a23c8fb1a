"""Run a workflow under the supervising trio nursery: signals, events, the result.

This is the root of every run, for the CLI and the Python API alike. SIGINT and SIGTERM cancel
the whole tree (the run ends ``cancelled``, steps that were running marked so); a second signal
stops waiting for a graceful end. The actor processes are gone when :func:`run_spec` returns.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import trio

from mcpp import protocol
from mcpp.actors import RunChannel, open_run
from mcpp.cache import default_path
from mcpp.cache import step as stepcache
from mcpp.supervisor import signals as early
from mcpp.supervisor.logs import log_cap, open_run_logs
from mcpp.supervisor.results import RunRecorder, RunResult
from mcpp.workflow.spec import WorkflowSpec

__all__ = ["EventHook", "new_run_id", "run_spec"]

EventHook = Callable[[RunRecorder, protocol.Event], None]
INTERRUPT_GRACE = 10.0


async def watch_signals(
    run_scope: trio.CancelScope,
    opened: list[RunChannel],
    interrupted: list[str],
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Task: the first SIGINT or SIGTERM cancels the run (through its channel once open) and
    gives it INTERRUPT_GRACE seconds to end; the next one stops waiting at once. Later ones
    are ignored, so the result document is still written. A signal the CLI's early handler
    kept (:mod:`mcpp.supervisor.signals`) counts as the first."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        if early.pending:
            interrupted.append(signal.Signals(early.pending[0]).name)
            run_scope.deadline = trio.current_time() + INTERRUPT_GRACE
        task_status.started()
        async for signum in signals:
            if interrupted:
                run_scope.cancel()
                continue
            interrupted.append(signal.Signals(signum).name)
            run_scope.deadline = trio.current_time() + INTERRUPT_GRACE
            if opened:
                await opened[0].cancel(f"interrupted by {interrupted[0]}")


def new_run_id() -> str:
    """Return a new unique run id whose first 12 hex digits are the time in ms (sortable)."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:12]}"


async def run_spec(
    spec: WorkflowSpec,
    *,
    run_id: str | None = None,
    completed: Mapping[str, bytes] | None = None,
    stored: Mapping[str, str] | None = None,
    attempts_before: Mapping[str, int] | None = None,
    on_event: EventHook | None = None,
    handle_signals: bool = True,
    home: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run ``spec`` through a coordinator actor and step actors; return the run result.

    ``completed`` maps steps that already succeeded (resume) to their encoded results;
    ``stored`` names the file that holds some of them (the journal's stored results): those
    reach the steps that take them as copies of the file, not through the coordinator;
    ``attempts_before`` the attempts steps made in earlier sessions (their numbering goes on).
    ``on_event(recorder, event)`` is called after each event is recorded. With
    ``handle_signals`` (main thread only), SIGINT/SIGTERM cancel the run.

    Steps with ``cache`` on use the result cache file :func:`mcpp.cache.default_path`; their
    targets are imported here to hash their functions.

    Each attempt's output (descriptors 1 and 2, ``logging``) goes to its log under the run's
    folder in ``home`` (default :func:`mcpp.home.mcpp_home`; see :mod:`mcpp.steplog`), capped
    at ``$MCPP_LOG_CAP`` bytes (default 50 MiB); none of it reaches this process's output.

    Raises WorkflowError (before any process starts) for a bad ``cache`` TTL or a cached step's
    unresolvable target, RunError if the actor tree itself fails (the coordinator dies),
    ProtocolError if a message is malformed, MCPPError for a bad ``$MCPP_LOG_CAP`` or a logs
    folder that cannot be made. Step failures are not raised: they are in the result.
    """
    identities = stepcache.identities(spec)
    run_id = run_id or new_run_id()
    cap = log_cap()
    completed = dict(completed or {})
    files = {step: path for step, path in (stored or {}).items() if step in completed}
    recorder = RunRecorder(run_id, spec, completed)
    interrupted: list[str] = []
    opened: list[RunChannel] = []
    steps = [step.id for step in spec.steps]
    with open_run_logs(run_id, spec.name, steps, home) as log_dir:
        message = protocol.RunWorkflow(
            version=protocol.PROTOCOL_VERSION,
            run_id=run_id,
            spec=spec,
            completed={k: msgspec.Raw(v) for k, v in completed.items() if k not in files},
            stored=files,
            cache_path=str(default_path().absolute()) if identities else None,
            identities=identities,
            log_dir=str(log_dir),
            log_cap=cap,
            attempts_before=dict(attempts_before or {}),
        )
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as run_scope:
                if handle_signals:
                    await nursery.start(watch_signals, run_scope, opened, interrupted)
                async with open_run(message) as channel:
                    opened.append(channel)
                    if interrupted:  # a signal came while the actors were starting
                        await channel.cancel(f"interrupted by {interrupted[0]}")
                    async for event in channel.events():
                        recorder.apply(event)
                        if on_event is not None:
                            on_event(recorder, event)
            nursery.cancel_scope.cancel()
    if interrupted:
        recorder.cancel_unfinished()
        return recorder.result("cancelled")
    return recorder.result()
