"""Journalled runs, ``resume`` and ``status``: the supervisor's side of :mod:`mcpp.journal`.

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

import argparse
import os
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from functools import partial
from typing import Any

import msgspec
import trio
from rich.console import Console

from mcpp.errors import WorkflowError
from mcpp.journal import Journal, JournalError, JournalRun, JournalWriter, RunEnded
from mcpp.loader import load_workflow_spec
from mcpp.results import RunResult
from mcpp.spec import WorkflowSpec
from mcpp.supervisor.progress import Progress, summary
from mcpp.supervisor.run import EventHook, new_run_id, run_spec

__all__ = [
    "DEFINITION_FIELDS",
    "add_resume",
    "add_status",
    "check_compatible",
    "resume",
    "resume_async",
    "run_journalled",
]

DEFINITION_FIELDS = ("run", "args")
EXIT_USAGE = 2


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


def add_status(commands: Any) -> None:
    """Add ``status [RUN_ID] [--json]``."""
    status = commands.add_parser("status", help="list journalled runs, or show one run")
    status.set_defaults(func=status_command)
    status.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show")
    status.add_argument("--json", action="store_true", help="print one JSON document")


def add_resume(commands: Any) -> None:
    """Add ``resume RUN_ID [--json]``."""
    command = commands.add_parser("resume", help="finish a run that did not succeed")
    command.set_defaults(func=resume_command)
    command.add_argument("run_id", metavar="RUN_ID", help="the run to finish")
    command.add_argument(
        "--json", action="store_true", help="print the result as one JSON document"
    )
    command.add_argument("--quiet", action="store_true", help="no progress output")


def status_command(args: argparse.Namespace) -> int:
    """Run ``status``: 0 when shown, 2 for an unknown run id."""
    try:
        with Journal.open() as journal:
            if args.run_id is None:
                runs = journal.runs()
            else:
                result = journal.load(args.run_id).result
    except JournalError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.run_id is not None:
        if args.json:
            sys.stdout.buffer.write(result.to_json() + b"\n")
        else:
            summary(result, Console())
        return 0
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode({"runs": runs}) + b"\n")
        return 0
    if not runs:
        print(f"no runs in {journal.path}")
    for run in runs:
        line = f"{run.run_id}  {run.status:<11}  {run.started_at}  {run.duration_s:9.2f} s"
        print(f"{line}  {run.workflow}")
    return 0


def resume_command(args: argparse.Namespace) -> int:
    """Run ``resume``; the exit codes of ``spawn`` (2 for an unknown or running run)."""
    try:
        with Progress(quiet=args.quiet or args.json) as progress:
            result = trio.run(
                partial(resume_async, args.run_id, on_event=progress.on_event, handle_signals=True)
            )
    except JournalError as exc:
        print(f"mcpp: cannot resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WorkflowError as exc:
        print(f"mcpp: cannot resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        sys.stdout.buffer.write(result.to_json() + b"\n")
    else:
        summary(result, Console())
    return result.exit_code
