"""Journalled runs and ``resume``: the supervisor's side of :mod:`mcpp.supervisor.journal`.

:func:`run_journalled` runs a spec like :func:`~mcpp.supervisor.run.run_spec` and records it in
the journal (``spawn`` uses it). :func:`resume` / :func:`resume_async` finish a run that did not
succeed, under the same run id: every step that did not succeed runs; a step that succeeded
keeps its journalled result and does not run again, unless it changed since
(:mod:`mcpp.supervisor.changes` has the rules: a changed definition or function code re-runs
the step and its dependents, and the resume says so).

Resuming loads the run's workflow file again, if it still exists, with the run's parameters:
its steps are the ones that run (so a fix to a failed step's ``run``, ``args`` or options is
taken). The workflow-level options (``max_concurrent``, ``on_failure``, ``actors``,
``workers``) stay the journalled ones, which may have come from the command line. A file that
no longer loads is refused (:class:`~mcpp.errors.WorkflowError`); a run whose file is gone, or
a Python API run, resumes with its journalled spec (its functions' code is still checked).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from functools import partial
from typing import Any

import msgspec
import trio

from mcpp.errors import MCPPError
from mcpp.supervisor.changes import ResumePlan, function_hashes, plan_resume
from mcpp.supervisor.journal import Journal, JournalError, JournalRun, RunEnded
from mcpp.supervisor.manage import apply_retention, keep_runs_setting
from mcpp.supervisor.results import RunResult
from mcpp.supervisor.run import EventHook, new_run_id, run_spec
from mcpp.supervisor.writer import JournalWriter
from mcpp.workflow.loader import load_workflow_spec
from mcpp.workflow.spec import WorkflowSpec

__all__ = ["resume", "resume_async", "run_journalled"]

Announce = Callable[[str], None]
RUN_OPTIONS = ("max_concurrent", "on_failure", "actors", "workers")
"""Workflow-level options a resume keeps from the journal (they may come from the CLI)."""


async def _run_session(
    journal: Journal,
    spec: WorkflowSpec,
    run_id: str,
    *,
    completed: Mapping[str, bytes],
    stored: Mapping[str, str] | None = None,
    attempts_before: Mapping[str, int] | None = None,
    on_event: EventHook | None,
    handle_signals: bool,
) -> RunResult:
    """Run one session of an already journalled run; write its events and its RunEnded."""
    writer = JournalWriter(journal, run_id)

    def hook(recorder: Any, event: Any) -> None:
        writer.record(event)
        if on_event is not None:
            on_event(recorder, event)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            result = await run_spec(
                spec,
                run_id=run_id,
                completed=completed,
                stored=stored,
                attempts_before=attempts_before,
                on_event=hook,
                handle_signals=handle_signals,
                home=journal.path.parent,
            )
            nursery.cancel_scope.cancel()
    except MCPPError:
        # The run could not go on (an unreachable Dask scheduler, say): it failed, it was not
        # interrupted; a resume may still finish it once the cause is fixed.
        with suppress(JournalError), trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(writer.close, RunEnded(status="failed", duration_s=0.0))
        raise
    except BaseException:
        # Keep what was seen (the run then reads as interrupted), even while cancelled.
        with suppress(JournalError), trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(writer.close)
        raise
    final = RunEnded(status=result.status, duration_s=result.duration_s)
    await trio.to_thread.run_sync(writer.close, final)
    return result


async def run_journalled(
    spec: WorkflowSpec,
    *,
    home: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    on_event: EventHook | None = None,
    handle_signals: bool = True,
) -> RunResult:
    """Run ``spec`` (as :func:`~mcpp.supervisor.run.run_spec`) and journal it in ``home``.

    The run row, spec and the hashes of its steps' functions are committed before any actor
    starts; events follow in batches. With ``MCPP_KEEP_RUNS=N`` set, the runs beyond the N
    newest (this one included) that are not running are removed first
    (:func:`~mcpp.supervisor.manage.apply_retention`). Raises JournalError if the journal
    cannot be written or ``MCPP_KEEP_RUNS`` is not a whole number >= 1, and whatever run_spec
    raises.
    """
    keep = keep_runs_setting()
    run_id = run_id or new_run_id()
    with Journal.open(home) as journal:
        journal.begin_run(run_id, spec, source=spec.source, functions=function_hashes(spec))
        if keep is not None:
            apply_retention(journal, keep)
        return await _run_session(
            journal,
            spec,
            run_id,
            completed={},
            on_event=on_event,
            handle_signals=handle_signals,
        )


def _current_spec(run: JournalRun) -> WorkflowSpec:
    """The run's workflow as it is now: its file loaded again, with the journal's options."""
    if run.source is None or not os.path.exists(run.source):
        return run.spec
    current = load_workflow_spec(run.source, run.spec.params)
    kept = {name: getattr(run.spec, name) for name in RUN_OPTIONS}
    return msgspec.structs.replace(current, **kept)


def _plan(run: JournalRun, current: WorkflowSpec) -> tuple[ResumePlan, dict[str, str]]:
    functions = function_hashes(current)
    plan = plan_resume(run.spec, current, set(run.completed), run.functions, functions)
    return plan, functions


async def resume_async(
    run_id: str,
    *,
    home: str | os.PathLike[str] | None = None,
    on_event: EventHook | None = None,
    handle_signals: bool = False,
    announce: Announce | None = None,
) -> RunResult:
    """Finish run ``run_id`` from the journal; return its whole result document.

    ``run_id`` may be a unique prefix or ``last``. Steps that succeeded and did not change are
    not run again (their stored results feed their dependents); all others run. ``announce``
    gets one line per succeeded step that runs again (and per step added or dropped), before
    anything runs; the document's ``rerun_because`` says it too. A run that succeeded and did
    not change is returned as is, running nothing. The result is the journal's document: the
    same run id, every step, the attempts of every session, ``resumed_at``, the total
    ``duration_s``. Raises RunIdError for an id that names no run or several, JournalError for
    a run whose supervisor still runs, WorkflowError when its workflow file no longer loads
    (the file, step and field are named), and whatever run_spec raises.
    """
    with Journal.open(home) as journal:
        run_id = journal.resolve(run_id)
        run = await trio.to_thread.run_sync(journal.load, run_id)  # large results: files
        if run.running_pid is not None:
            raise JournalError(f"run {run_id} is still running (supervisor pid {run.running_pid})")
        current = _current_spec(run)
        plan, functions = _plan(run, current)
        for line in plan.notices():
            if announce is not None:
                announce(line)
        unchanged = not (plan.rerun or plan.added or plan.dropped)
        if run.result.status == "succeeded" and unchanged:
            return run.result
        journal.begin_resume(
            run_id, plan.reused, spec=current, functions=functions, rerun=plan.rerun
        )
        if len(plan.reused) == len(current.steps):  # nothing left to run
            journal.append(run_id, [(time.time(), RunEnded(status="succeeded", duration_s=0.0))])
        else:
            await _run_session(
                journal,
                current,
                run_id,
                completed={step: run.completed[step] for step in plan.reused},
                stored=run.stored,
                attempts_before={
                    step_id: record.attempts for step_id, record in run.result.steps.items()
                },
                on_event=on_event,
                handle_signals=handle_signals,
            )
        finished = await trio.to_thread.run_sync(journal.load, run_id)
        return finished.result


def resume(run_id: str, *, home: str | os.PathLike[str] | None = None) -> RunResult:
    """Finish run ``run_id`` (blocking); see :func:`resume_async`. Ctrl-C cancels the run."""
    return trio.run(partial(resume_async, run_id, home=home, handle_signals=True))
