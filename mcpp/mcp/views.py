"""What the MCP tools answer, read from the journal, the workflow files and the run children.

Blocking functions (SQLite, imports): the server calls them in a worker thread. They take the
server's :class:`~mcpp.mcp.runs.OwnedRun` records where a run's child tells more than the
journal (a run that started but is not journalled yet; the exit code) and raise
:class:`~mcpp.errors.MCPPError` subclasses with the command line's messages:
:class:`~mcpp.supervisor.journal.JournalError` for an unreadable journal or unknown run,
:class:`~mcpp.home.RunIdError` for a run id that names no run or several.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from mcpp.dag import Graph, heuristics
from mcpp.home import resolve_run_id
from mcpp.mcp.models import (
    CriticalPath,
    Dependencies,
    DependencyNode,
    Edge,
    LogLineView,
    LogsView,
    ResultView,
    RunList,
    RunRow,
    RunStatusView,
    TemplateList,
    TemplateView,
)
from mcpp.mcp.runs import OwnedRun
from mcpp.status import StepState
from mcpp.supervisor.journal import Journal, JournalError, JournalRun
from mcpp.supervisor.results import RunResult, StepResult
from mcpp.workflow.spec import WorkflowSpec
from mcpp.workflow.templates import TemplateRegistry

__all__ = [
    "dependencies",
    "list_runs",
    "load_run",
    "logs",
    "resolve",
    "result_view",
    "status_view",
    "templates",
]

FINISHED_RUN = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


def resolve(text: str, owned: Mapping[str, OwnedRun]) -> str:
    """The run ``text`` names: a whole id, a unique prefix or ``last``, among the journalled
    runs and the runs this server started. Raises RunIdError, JournalError."""
    with Journal.open() as journal:
        known = dict(journal.run_ids())
    for run_id, run in owned.items():
        known.setdefault(run_id, run.started_at)
    return resolve_run_id(text, known.items())


def load_run(run_id: str, owned: OwnedRun | None = None) -> JournalRun | None:
    """The journal's record of ``run_id``; None if this server started it and its child has not
    journalled it (yet, or ever: it was cancelled first). Raises JournalError for an unknown run,
    or one whose child exited without journalling it (naming the child's error)."""
    try:
        with Journal.open() as journal:
            return journal.load(run_id)
    except JournalError:
        if owned is None:
            raise
        if owned.alive or owned.cancelled:
            with Journal.open() as journal:  # it may have been journalled since
                if run_id not in {run.run_id for run in journal.runs()}:
                    return None
                return journal.load(run_id)
        raise JournalError(
            f"run {run_id} ended before it was journalled (exit {owned.returncode}): "
            f"{owned.stderr_tail() or 'no message'}"
        ) from None


def _unjournalled(run_id: str, owned: OwnedRun) -> RunResult:
    """The document of a run whose child has not journalled it: running (not yet), or
    cancelled before it could (every step cancelled)."""
    assert owned.spec is not None
    if owned.alive:
        steps = {step.id: StepResult() for step in owned.spec.steps}
        return RunResult(
            run_id=run_id, workflow=owned.spec.name, status="running", duration_s=0.0, steps=steps
        )
    steps = {step.id: StepResult(status=StepState.CANCELLED) for step in owned.spec.steps}
    return RunResult(
        run_id=run_id, workflow=owned.spec.name, status="cancelled", duration_s=0.0, steps=steps
    )


def _document(run_id: str, owned: OwnedRun | None) -> tuple[RunResult, float | None]:
    """The run's result document and, if journalled, its creation time."""
    run = load_run(run_id, owned)
    if run is not None:
        return run.result, run.created_at
    assert owned is not None
    return _unjournalled(run_id, owned), None


def status_view(run_id: str, owned: OwnedRun | None) -> RunStatusView:
    """Statuses, counts, elapsed time and running steps of ``run_id``."""
    doc, _ = _document(run_id, owned)
    steps = {step_id: str(record.status) for step_id, record in doc.steps.items()}
    status: str = "running" if owned is not None and owned.alive else doc.status
    counts: dict[str, int] = {}
    for step_status in steps.values():
        counts[step_status] = counts.get(step_status, 0) + 1
    elapsed = doc.duration_s
    if owned is not None and owned.alive:
        elapsed = time.time() - owned.started_at
    return RunStatusView(
        run_id=run_id,
        workflow=doc.workflow,
        status=status,
        finished=_finished(doc, owned),
        owned=owned is not None,
        elapsed_s=round(elapsed, 3),
        counts=counts,
        steps=steps,
        running=[s for s, status in steps.items() if status == StepState.RUNNING],
        failed=[s for s, status in steps.items() if status in (StepState.FAILED, "timed_out")],
    )


def _finished(doc: RunResult, owned: OwnedRun | None) -> bool:
    """Ended in the journal, and (if ours) its child has exited: nothing will change."""
    return doc.status in FINISHED_RUN and (owned is None or not owned.alive)


def result_view(run_id: str, owned: OwnedRun | None) -> ResultView:
    """The result document of ``run_id`` as it is now."""
    doc, _ = _document(run_id, owned)
    return ResultView(
        run_id=run_id,
        status="running" if owned is not None and owned.alive else doc.status,
        finished=_finished(doc, owned),
        document=msgspec.json.decode(doc.to_json()),
    )


def list_runs(
    owned: Mapping[str, OwnedRun], *, status: str | None, workflow: str | None, limit: int
) -> RunList:
    """Journalled runs, newest first, filtered by ``status`` and ``workflow`` name; with them
    this server's runs that are not journalled yet (or were cancelled before they were)."""
    with Journal.open() as journal:
        rows = [
            RunRow(
                run_id=run.run_id,
                workflow=run.workflow,
                status="running" if run.run_id in owned and owned[run.run_id].alive else run.status,
                started_at=run.started_at,
                duration_s=run.duration_s,
                owned=run.run_id in owned,
            )
            for run in journal.runs()
        ]
    journalled = {row.run_id for row in rows}
    for run_id, run in owned.items():
        if run_id not in journalled and run.spec is not None:
            doc = _unjournalled(run_id, run)
            started = datetime.datetime.fromtimestamp(run.started_at, datetime.UTC)
            rows.append(
                RunRow(
                    run_id=run_id,
                    workflow=doc.workflow,
                    status=doc.status,
                    started_at=started.isoformat(timespec="milliseconds"),
                    duration_s=0.0,
                    owned=True,
                )
            )
    rows.sort(key=lambda row: (row.started_at, row.run_id), reverse=True)
    found = [
        row
        for row in rows
        if (status is None or row.status == status)
        and (workflow is None or row.workflow == workflow)
    ]
    return RunList(runs=found[:limit], total=len(found))


def dependencies(spec: WorkflowSpec, result: RunResult | None = None) -> Dependencies:
    """Nodes, edges, levels, topological order and critical path of ``spec``'s graph.

    With a run's ``result`` the nodes carry its step statuses and the critical path is measured
    in the steps' durations (seconds); without one, every step counts 1.
    """
    graph = Graph({step.id: step.depends_on for step in spec.steps})
    durations = None
    if result is not None and any(r.duration_s for r in result.steps.values()):
        durations = {step_id: r.duration_s for step_id, r in result.steps.items()}
    lengths = heuristics.critical_path(graph, durations)
    levels = heuristics.levels(graph)
    level_of = {step: k for k, level in enumerate(levels) for step in level}
    nodes = [
        DependencyNode(
            id=step.id,
            run=step.run,
            depends_on=list(step.depends_on),
            dependents=list(graph.dependents(step.id)),
            level=level_of[step.id],
            path_length=round(lengths[step.id], 6),
            status=None if result is None else str(result.steps[step.id].status),
        )
        for step in spec.steps
    ]
    return Dependencies(
        workflow=spec.name,
        nodes=nodes,
        edges=[Edge(upstream=a, downstream=b) for a, b in graph.edges()],
        levels=[list(level) for level in levels],
        topological_order=list(graph.topological_order()),
        critical_path=_critical_path(
            graph, lengths, "steps" if durations is None else "duration_s"
        ),
    )


def _critical_path(graph: Graph, lengths: Mapping[str, float], measure: Any) -> CriticalPath:
    """Follow the longest remaining path from the source with the longest one."""
    sources = [step for step in graph.steps if not graph.dependencies(step)]
    path: list[str] = []
    if sources:
        step = max(sources, key=lambda s: lengths[s])  # max keeps the first of equals
        path.append(step)
        while below := graph.dependents(step):
            step = max(below, key=lambda s: lengths[s])
            path.append(step)
    length = lengths[path[0]] if path else 0.0
    return CriticalPath(steps=path, length=round(length, 6), measure=measure)


def templates(folder: str) -> TemplateList:
    """The templates of ``folder``, newest version first, and the files that are not."""
    registry = TemplateRegistry(folder)
    found = [
        TemplateView(
            ref=t.ref,
            name=t.name,
            version=t.version,
            path=t.path,
            description=t.description,
            params={name: spec.to_dict() for name, spec in t.params.items()},
            steps=list(t.steps),
            includes=list(t.includes),
        )
        for t in registry.templates()
    ]
    problems = [" ".join(str(p).split()) for p in registry.problems]
    return TemplateList(folder=registry.folder, templates=found, problems=problems)


def logs(run_id: str, step: str | None, *, attempt: int | None, tail: int | None) -> LogsView:
    """The captured output of ``run_id`` (one ``step``, or all), the last ``tail`` lines.

    Raises JournalError for an unknown run, and what :func:`mcpp.supervisor.logs.read_logs`
    raises.
    """
    from mcpp.supervisor.logs import read_logs

    lines = read_logs(run_id, step, attempt=attempt, tail=tail)
    return LogsView(
        run_id=run_id,
        step=step,
        lines=[
            LogLineView(
                step=line.step,
                attempt=line.attempt,
                stream=str(line.stream),
                text=line.text,
                level=None if line.level is None else str(line.level),
            )
            for line in lines
        ],
    )
