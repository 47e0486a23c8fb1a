"""The MCP tools that start and stop runs: validate, submit, cancel, resume.

Each run is a child process of the server (:mod:`mcpp.mcp.runs`): ``mcpp spawn --json`` with the
run id chosen here, or ``mcpp resume RUN_ID --json``. A workflow is loaded and checked in the
server first, so a bad one is a tool error at once (naming the file, the step and the field) and
nothing starts.
"""

from __future__ import annotations

import argparse
import os
from typing import Annotated, Literal

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcpp.errors import MCPPError, WorkflowError
from mcpp.mcp import views
from mcpp.mcp.models import CancelResult, SubmitResult, ValidateResult, ValidationIssue
from mcpp.mcp.toolkit import File, Inline, InlineFormat, Params, RunId, Tools, cli_errors, one_line
from mcpp.supervisor.journal import JournalRun
from mcpp.supervisor.run import new_run_id
from mcpp.workflow.loader import load_workflow_spec

__all__ = ["add_run_tools"]


def add_run_tools(server: MCPServer, tools: Tools) -> None:
    """Register workflow_validate, workflow_submit, workflow_cancel and workflow_resume."""
    policy, runs = tools.policy, tools.runs

    @server.tool()
    async def workflow_validate(
        file: File = None,
        inline: Inline = None,
        inline_format: InlineFormat = "toml",
        params: Params = None,
    ) -> ValidateResult:
        """Check a workflow as `mcpp spawn --dry-run` does (importing its step modules) and
        start nothing. An invalid workflow is not a tool error: the result says valid=false
        and names the file, step and field at fault."""
        try:
            spec = await tools.load(file, inline, inline_format, params)
        except WorkflowError as exc:
            issue = ValidationIssue(
                message=f"invalid workflow: {one_line(exc)}",
                file=exc.file,
                step=exc.step,
                field=exc.field,
            )
            return ValidateResult(valid=False, error=issue)
        except MCPPError as exc:
            raise ToolError(one_line(exc)) from None
        return ValidateResult(
            valid=True,
            workflow=spec.name,
            steps=[step.id for step in spec.steps],
            params=msgspec.to_builtins(spec.params),
        )

    @server.tool()
    async def workflow_submit(
        file: File = None,
        inline: Inline = None,
        inline_format: InlineFormat = "toml",
        params: Params = None,
        max_concurrent: Annotated[int | None, Field(ge=1, description="steps at once")] = None,
        actors: Annotated[
            Literal["per_step", "pool"] | None,
            Field(description="per_step: a process per step; pool: long-lived workers"),
        ] = None,
        workers: Annotated[int | None, Field(ge=1, description="pool size (pool)")] = None,
        fail_fast: Annotated[bool, Field(description="cancel everything on a failure")] = False,
    ) -> SubmitResult:
        """Start a workflow in the background and return its run_id at once. Follow it with
        workflow_status, wait for it with workflow_result, stop it with workflow_cancel."""
        from mcpp.cli.main import apply_options

        with cli_errors():
            runs.check_room()
            run_id = new_run_id()
            spec = await tools.load(file, inline, inline_format, params, run_id)
            options = argparse.Namespace(
                max_concurrent=max_concurrent, fail_fast=fail_fast, actors=actors, workers=workers
            )
            spec = apply_options(spec, options)
            command = ["spawn", "--json", "--quiet", "--run-id", run_id]
            command += ["--params-json", msgspec.json.encode(params or {}).decode()]
            if max_concurrent is not None:
                command += ["--max-concurrent", str(max_concurrent)]
            if actors is not None:
                command += ["--actors", actors]
            if workers is not None:
                command += ["--workers", str(workers)]
            if fail_fast:
                command.append("--fail-fast")
            assert spec.source is not None
            await runs.start(run_id, [*command, spec.source], kind="spawn", spec=spec)
        return SubmitResult(run_id=run_id, workflow=spec.name, steps=[s.id for s in spec.steps])

    @server.tool()
    async def workflow_cancel(run_id: RunId) -> CancelResult:
        """Cancel a run this server started: its running steps are stopped and marked
        cancelled, the rest skipped; the run is journalled as cancelled (workflow_resume
        finishes it later). Returns once its processes are gone."""
        with cli_errors():
            run_id = await tools.resolve(run_id)
            owned = runs.get(run_id)
            if owned is None or not owned.alive:
                journalled = await tools.blocking(views.load_run, run_id, owned)
                if journalled is not None and journalled.running_pid is not None:
                    raise ToolError(
                        f"run {run_id} was not started by this server (supervisor pid "
                        f"{journalled.running_pid}); stop it with `mcpp cancel {run_id}`"
                    )
            else:
                await runs.cancel(owned)
            view = await tools.blocking(views.status_view, run_id, owned)
        return CancelResult(
            run_id=run_id,
            status=view.status,
            exit_code=None if owned is None else owned.returncode,
            steps=view.steps,
        )

    @server.tool()
    async def workflow_resume(run_id: RunId) -> SubmitResult:
        """Finish a run that did not succeed (cancelled, failed, interrupted) in the background,
        as `mcpp resume` does: steps that succeeded keep their results, the others run again
        (and a succeeded step whose definition or code changed since). Refused if its workflow
        file no longer loads (the file, step and field are named)."""
        with cli_errors():
            run_id = await tools.resolve(run_id)
            runs.check_room(run_id)
            run = await tools.blocking(views.load_run, run_id, runs.get(run_id))
            if run is None:  # check_room: its child is not alive, so it was cancelled early
                raise ToolError(f"run {run_id} was cancelled before it started: submit it again")
            if run.running_pid is not None:
                raise ToolError(f"run {run_id} is still running (supervisor pid {run.running_pid})")
            steps = [step.id for step in run.spec.steps]
            if run.result.status == "succeeded":
                return SubmitResult(
                    run_id=run_id, workflow=run.spec.name, steps=steps, status="succeeded"
                )
            if not policy.trusted(run.source):
                if not policy.allow_inline:
                    raise ToolError(
                        f"run {run_id}: its workflow ({run.source or 'inline'}) is not under "
                        "the server's roots; resume it with `mcpp resume` instead"
                    )
            else:
                await tools.importing(_check_loads, run)
            await runs.start(
                run_id, ["resume", run_id, "--json", "--quiet"], kind="resume", spec=run.spec
            )
        return SubmitResult(run_id=run_id, workflow=run.spec.name, steps=steps)


def _check_loads(run: JournalRun) -> None:
    """Raise WorkflowError if the run's workflow file exists but no longer loads (resume
    would refuse it; a loadable change is for the resume to take, see mcpp.supervisor.changes)."""
    if run.source is not None and os.path.exists(run.source):
        load_workflow_spec(run.source, run.spec.params)
