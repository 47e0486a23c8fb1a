"""Journalled runs, ``resume`` and ``status``: the supervisor's side of
:mod:`mcpp.supervisor.journal`.

:func:`run_journalled` runs a spec like :func:`~mcpp.supervisor.run.run_spec` and records it in
the journal (``spawn`` uses it). :func:`resume` / :func:`resume_async` finish a run that did not
succeed: the steps that succeeded keep their journalled results and are not run again; every
other step runs, fed the stored results of its upstream steps, under the same run id.

Resuming uses the spec stored in the journal. If the run's workflow file still exists it is
loaded again with the run's parameters and compared; the resume is refused
(:class:`~mcpp.errors.WorkflowError`) when the change is *incompatible*:

* the step graph changed: a step was added or removed, or a step's ``depends_on`` changed;
* a step's definition changed: its ``run`` target or its ``args`` (parameters substituted).

Execution options (``timeout``, ``retries``, ``priority``, ``max_concurrent``, ``on_failure``...)
may differ; the journalled values are used. A file that no longer loads is refused too; a file
that no longer exists is not checked, nor is the file of a run that already succeeded (its
resume returns the journalled result). Changes to the code of a step's module are not detected.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import suppress
from functools import partial
from typing import Any

import trio

from mcpp.errors import WorkflowError
from mcpp.supervisor.journal import Journal, JournalError, JournalRun, JournalWriter, RunEnded
from mcpp.supervisor.results import RunResult
from mcpp.supervisor.run import EventHook, new_run_id, run_spec
from mcpp.workflow.loader import load_workflow_spec
from mcpp.workflow.spec import WorkflowSpec

__all__ = [
    "DEFINITION_FIELDS",
    "check_compatible",
    "resume",
    "resume_async",
    "run_journalled",
]

DEFINITION_FIELDS = ("run", "args")


async def _run_session(
    journal: Journal,
    spec: WorkflowSpec,
    run_id: str,
    *,
    completed: Mapping[str, bytes],
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
                on_event=hook,
                handle_signals=handle_signals,
                home=journal.path.parent,
            )
            nursery.cancel_scope.cancel()
    except BaseException:
        with suppress(JournalError):  # keep what was seen; the run then reads as interrupted
            writer.close()
        raise
    writer.close(RunEnded(status=result.status, duration_s=result.duration_s))
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

    The run row and spec are committed before any actor starts; events follow in batches.
    Raises JournalError if the journal cannot be written, and whatever run_spec raises.
    """
    run_id = run_id or new_run_id()
    with Journal.open(home) as journal:
        journal.begin_run(run_id, spec, source=spec.source)
        return await _run_session(
            journal,
            spec,
            run_id,
            completed={},
            on_event=on_event,
            handle_signals=handle_signals,
        )


def check_compatible(journalled: WorkflowSpec, current: WorkflowSpec, *, run_id: str) -> None:
    """Raise WorkflowError if ``current`` (the file now) differs incompatibly from the run's spec.

    Incompatible: a step added or removed, a changed ``depends_on``, or a changed field of
    :data:`DEFINITION_FIELDS` (see the module docstring). The message names the step and field.
    """
    hint = f"the workflow changed since run {run_id} started; start a new run with spawn"
    old = {step.id: step for step in journalled.steps}
    new = {step.id: step for step in current.steps}
    if added := sorted(new.keys() - old.keys()):
        raise WorkflowError(f"step(s) added: {', '.join(added)} ({hint})", field="steps")
    if removed := sorted(old.keys() - new.keys()):
        raise WorkflowError(f"step(s) removed: {', '.join(removed)} ({hint})", field="steps")
    for step_id, step in old.items():
        if sorted(step.depends_on) != sorted(new[step_id].depends_on):
            raise WorkflowError(f"dependencies changed ({hint})", step=step_id, field="depends_on")
        for field in DEFINITION_FIELDS:
            if getattr(step, field) != getattr(new[step_id], field):
                raise WorkflowError(f"definition changed ({hint})", step=step_id, field=field)


async def resume_async(
    run_id: str,
    *,
    home: str | os.PathLike[str] | None = None,
    on_event: EventHook | None = None,
    handle_signals: bool = False,
) -> RunResult:
    """Finish run ``run_id`` from the journal; return its whole result document.

    Steps that succeeded are not run again (their stored results feed their dependents); all
    others run. A run that already succeeded is returned as is, running nothing. The result has
    the same run id and every step of the run. Raises JournalError for an unknown run or one
    whose supervisor still runs, WorkflowError when its workflow file changed incompatibly or no
    longer loads (the file, step and field are named), and whatever run_spec raises.
    """
    with Journal.open(home) as journal:
        run = _prepare_resume(journal, run_id)
        if run.result.status == "succeeded" or len(run.completed) == len(run.spec.steps):
            return run.result
        result = await _run_session(
            journal,
            run.spec,
            run_id,
            completed=run.completed,
            on_event=on_event,
            handle_signals=handle_signals,
        )
    for step_id in run.completed:
        result.steps[step_id] = run.result.steps[step_id]
    return result


def _prepare_resume(journal: Journal, run_id: str) -> JournalRun:
    """Load ``run_id``, check it may resume, and begin its new session (unless it succeeded).

    A run whose steps all succeeded but which did not end gets a session that ends at once.
    """
    run = journal.load(run_id)
    if run.running_pid is not None:
        raise JournalError(f"run {run_id} is still running (supervisor pid {run.running_pid})")
    if run.result.status == "succeeded":
        return run
    if run.source is not None and os.path.exists(run.source):
        current = load_workflow_spec(run.source, run.spec.params)
        check_compatible(run.spec, current, run_id=run_id)
    journal.begin_resume(run_id, run.completed)
    if len(run.completed) == len(run.spec.steps):
        journal.append(run_id, [(time.time(), RunEnded(status="succeeded", duration_s=0.0))])
        return journal.load(run_id)
    return run


def resume(run_id: str, *, home: str | os.PathLike[str] | None = None) -> RunResult:
    """Finish run ``run_id`` (blocking); see :func:`resume_async`. Ctrl-C cancels the run."""
    return trio.run(partial(resume_async, run_id, home=home, handle_signals=True))
