"""The typed results of the MCP tools: pydantic models, so the SDK publishes each tool's output
JSON Schema (field descriptions included) and returns ``structured_content``.

Statuses are mcpp's one vocabulary: a run is ``running``, ``succeeded``, ``failed``,
``cancelled`` or ``interrupted`` (its supervisor died); a step ``pending``, ``running``,
``succeeded``, ``failed``, ``timed_out``, ``skipped`` or ``cancelled``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "CancelResult",
    "CriticalPath",
    "Dependencies",
    "DependencyNode",
    "Edge",
    "LogLineView",
    "LogsView",
    "ResultView",
    "RunList",
    "RunRow",
    "RunStatusView",
    "SubmitResult",
    "TemplateList",
    "TemplateView",
    "ValidateResult",
    "ValidationIssue",
]

RUN_STATUS = "running, succeeded, failed, cancelled or interrupted (its supervisor died)"


class ValidationIssue(BaseModel):
    """Why a workflow is invalid, as the command line says it."""

    message: str = Field(description="the whole message, as `mcpp spawn` prints it")
    file: str | None = Field(default=None, description="the workflow file at fault")
    step: str | None = Field(default=None, description="the step at fault, if one is")
    field: str | None = Field(default=None, description="the field at fault (e.g. 'timeout')")


class ValidateResult(BaseModel):
    """The verdict on a workflow, checked exactly as `mcpp spawn --dry-run` checks it."""

    valid: bool = Field(description="true if the workflow would start")
    workflow: str | None = Field(default=None, description="the workflow's name")
    steps: list[str] = Field(default=[], description="step ids in definition order")
    params: dict[str, Any] = Field(default={}, description="the parameter values it would use")
    error: ValidationIssue | None = Field(default=None, description="why it is invalid")


class SubmitResult(BaseModel):
    """A run that was started; it goes on in the background."""

    run_id: str = Field(description="pass it to workflow_status / workflow_result / ...")
    workflow: str
    steps: list[str] = Field(description="step ids in definition order")
    status: str = Field(default="running", description=RUN_STATUS)


class RunStatusView(BaseModel):
    """Where a run is now."""

    run_id: str
    workflow: str
    status: str = Field(description=RUN_STATUS)
    finished: bool = Field(description="true once the run will change no more")
    owned: bool = Field(description="true if this server started it (it can cancel it)")
    elapsed_s: float = Field(description="seconds since its latest session started, or its span")
    counts: dict[str, int] = Field(description="number of steps in each step status")
    steps: dict[str, str] = Field(description="each step's status")
    running: list[str] = Field(description="steps running now")
    failed: list[str] = Field(description="steps that failed or timed out")


class ResultView(BaseModel):
    """A run's result document (as `mcpp spawn --json` prints it) once it has finished, or as
    far as it got when the wait ended first."""

    run_id: str
    status: str = Field(description=RUN_STATUS)
    finished: bool = Field(description="false if the wait ended before the run did")
    document: dict[str, Any] = Field(
        description="run_id, workflow, status, duration_s and per step: status, attempts, "
        "duration_s, result, error {type, message, traceback}, skipped_because, history"
    )


class CancelResult(BaseModel):
    """A run after its cancel."""

    run_id: str
    status: str = Field(description=RUN_STATUS)
    exit_code: int | None = Field(description="the supervisor's exit code (130: cancelled)")
    steps: dict[str, str] = Field(description="each step's status")


class RunRow(BaseModel):
    """One journalled run."""

    run_id: str
    workflow: str
    status: str = Field(description=RUN_STATUS)
    started_at: str = Field(description="ISO 8601, UTC")
    duration_s: float
    owned: bool = Field(description="true if this server started it")


class RunList(BaseModel):
    """Journalled runs, newest first."""

    runs: list[RunRow]
    total: int = Field(description="runs matching the filters (before the limit)")


class DependencyNode(BaseModel):
    """One step of the graph."""

    id: str
    run: str = Field(description="its 'module:function'")
    depends_on: list[str]
    dependents: list[str]
    level: int = Field(description="longest chain of dependencies below it (0: a source)")
    path_length: float = Field(description="longest path from it to a sink, itself included")
    status: str | None = Field(default=None, description="its status in the run, if a run")


class Edge(BaseModel):
    """``upstream`` must succeed before ``downstream`` starts (its result is an argument)."""

    upstream: str
    downstream: str


class CriticalPath(BaseModel):
    """The longest chain of steps: what bounds the run's duration."""

    steps: list[str]
    length: float
    measure: Literal["duration_s", "steps"] = Field(
        description="duration_s: the run's measured step durations; steps: one per step"
    )


class Dependencies(BaseModel):
    """A workflow's step graph."""

    workflow: str
    nodes: list[DependencyNode]
    edges: list[Edge]
    levels: list[list[str]] = Field(description="level k: steps whose longest chain below is k")
    topological_order: list[str]
    critical_path: CriticalPath


class LogLineView(BaseModel):
    """One captured line of a step's output."""

    step: str
    attempt: int
    stream: str = Field(description="stdout, stderr or log")
    text: str
    level: str | None = None


class LogsView(BaseModel):
    """Captured output of a run's steps."""

    run_id: str
    step: str | None
    lines: list[LogLineView]


class TemplateView(BaseModel):
    """One workflow template (``spawn NAME@VERSION``)."""

    ref: str = Field(description="NAME@VERSION, to pass as workflow_submit's file")
    name: str
    version: str | None
    path: str
    description: str
    params: dict[str, dict[str, Any]] = Field(description="type, required, default, choices...")
    steps: list[str]
    includes: list[str]


class TemplateList(BaseModel):
    """The templates of the server's template folder, newest version first."""

    folder: str
    templates: list[TemplateView]
    problems: list[str] = Field(description="files of the folder that are not valid templates")
