"""The MCP tools that read: status, result (waiting, with progress), list, dependencies, logs,
templates; everything comes from the journal, the run folders and the server's own runs."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from mcpp.mcp import views
from mcpp.mcp.models import (
    Dependencies,
    LogsView,
    ResultView,
    RunList,
    RunStatusView,
    TemplateList,
)
from mcpp.mcp.toolkit import File, Inline, InlineFormat, Params, RunId, Tools, cli_errors

__all__ = ["MAX_WAIT", "RESULT_POLL", "add_read_tools"]

RESULT_POLL = 0.25  # how often workflow_result looks at the journal while it waits
MAX_WAIT = 3600.0


def add_read_tools(server: MCPServer, tools: Tools) -> None:
    """Register workflow_status, workflow_result, workflow_list, workflow_dependencies,
    workflow_logs and templates_list."""
    policy, runs = tools.policy, tools.runs

    @server.tool()
    async def workflow_status(run_id: RunId) -> RunStatusView:
        """Where a run is: its status, each step's status, counts by status, the steps running
        now, those that failed, and the seconds elapsed."""
        with cli_errors():
            run_id = await tools.resolve(run_id)
            return await tools.blocking(views.status_view, run_id, runs.get(run_id))

    @server.tool()
    async def workflow_result(
        run_id: RunId,
        wait_s: Annotated[
            float, Field(ge=0, le=MAX_WAIT, description="wait up to this long for the end")
        ] = 0.0,
        ctx: Context | None = None,
    ) -> ResultView:
        """The run's result document (per step: status, result, error, attempts, durations),
        waiting up to wait_s seconds for the run to finish (finished=false if it has not).
        While it waits it sends progress notifications (steps finished of all) if the call
        carries a progress token."""
        with cli_errors():
            run_id = await tools.resolve(run_id)
            deadline = anyio.current_time() + wait_s
            reported: tuple[int, list[str]] | None = None
            while True:
                owned = runs.get(run_id)
                view = await tools.blocking(views.result_view, run_id, owned)
                left = deadline - anyio.current_time()
                if view.finished or left <= 0:
                    return view
                states = {k: s["status"] for k, s in view.document["steps"].items()}
                done = sum(1 for s in states.values() if s not in ("pending", "running"))
                running = [k for k, s in states.items() if s == "running"]
                if ctx is not None and (done, running) != reported:
                    reported = (done, running)
                    message = f"{done}/{len(states)} steps finished; running: "
                    await ctx.report_progress(
                        done, len(states), message + (", ".join(running) or "-")
                    )
                with anyio.move_on_after(min(RESULT_POLL, left)):
                    if owned is not None and owned.alive:
                        await owned.done.wait()
                    else:
                        await anyio.sleep(RESULT_POLL)

    @server.tool()
    async def workflow_list(
        status: Annotated[
            Literal["running", "succeeded", "failed", "cancelled", "interrupted"] | None,
            Field(description="only runs with this status"),
        ] = None,
        workflow: Annotated[str | None, Field(description="only runs of this workflow")] = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="at most this many")] = 20,
    ) -> RunList:
        """Journalled runs (this server's and any other), newest first."""
        with cli_errors():
            return await tools.blocking(
                lambda: views.list_runs(
                    dict(runs.runs), status=status, workflow=workflow, limit=limit
                )
            )

    @server.tool()
    async def workflow_dependencies(
        file: File = None,
        inline: Inline = None,
        inline_format: InlineFormat = "toml",
        params: Params = None,
        run_id: Annotated[
            str | None, Field(description="instead of a file: a run's graph, with its statuses")
        ] = None,
    ) -> Dependencies:
        """A workflow's step graph: nodes (with level and longest path below), edges
        (upstream before downstream), topological levels and order, and the critical path
        (in measured seconds for a run, else in steps)."""
        with cli_errors():
            if run_id is None:
                spec = await tools.load(file, inline, inline_format, params)
                return await tools.blocking(views.dependencies, spec)
            run_id = await tools.resolve(run_id)
            run = await tools.blocking(views.load_run, run_id, runs.get(run_id))
            if run is None:
                owned = runs.get(run_id)
                assert owned is not None and owned.spec is not None
                return await tools.blocking(views.dependencies, owned.spec)
            return await tools.blocking(views.dependencies, run.spec, run.result)

    @server.tool()
    async def workflow_logs(
        run_id: RunId,
        step: Annotated[str | None, Field(description="one step's output (default: all)")] = None,
        attempt: Annotated[
            int | None, Field(ge=1, description="that attempt (default: the latest that wrote)")
        ] = None,
        tail: Annotated[int, Field(ge=1, le=100_000, description="the last N lines")] = 100,
    ) -> LogsView:
        """What a run's steps printed (stdout, stderr) and logged, the last `tail` lines."""
        with cli_errors():
            run_id = await tools.resolve(run_id)
            return await tools.blocking(
                lambda: views.logs(run_id, step, attempt=attempt, tail=tail)
            )

    @server.tool()
    async def templates_list() -> TemplateList:
        """The workflow templates of the server's template folder (pass a ref as
        workflow_submit's file), with their parameters and steps."""
        with cli_errors():
            return await tools.blocking(views.templates, str(policy.template_dir))
