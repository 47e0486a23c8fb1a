"""The MCP tools and resources of ``mcpp mcp`` (on the ``mcp`` SDK's :class:`MCPServer`).

Every tool is typed (the SDK publishes the JSON Schema of its arguments and of its
:mod:`mcpp.mcp.models` result) and fails as the command line does: a tool error carrying the
CLI's message (``invalid workflow: FILE: step 'x', field 'timeout': ...``), never a traceback.
Blocking work (loading a workflow, which imports its step modules; reading the journal) runs in
a worker thread; loads are serialised, since they change ``sys.path`` for a moment.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import Field

from mcpp.errors import MCPPError, WorkflowError
from mcpp.home import PRIVATE_FILE, private_folder, run_folder
from mcpp.mcp import views
from mcpp.mcp.models import (
    CancelResult,
    Dependencies,
    LogsView,
    ResultView,
    RunList,
    RunStatusView,
    SubmitResult,
    TemplateList,
    ValidateResult,
    ValidationIssue,
)
from mcpp.mcp.policy import Policy, looks_like_path
from mcpp.mcp.runs import RunManager
from mcpp.supervisor.journal import JournalRun
from mcpp.supervisor.resume import check_compatible
from mcpp.supervisor.run import new_run_id
from mcpp.workflow.loader import load_workflow_spec
from mcpp.workflow.spec import WorkflowSpec
from mcpp.workflow.templates import TemplateRegistry

__all__ = ["INSTRUCTIONS", "build_server"]

T = TypeVar("T")
RESULT_POLL = 0.25  # how often workflow_result looks at the journal while it waits
MAX_WAIT = 3600.0

INSTRUCTIONS = """\
mcpp runs workflows: DAGs of Python steps, each step in its own process. Check a workflow with
workflow_validate, start it with workflow_submit (it returns a run_id at once), follow it with
workflow_status or wait for it with workflow_result (wait_s), read a step's output with
workflow_logs, stop it with workflow_cancel, finish a cancelled or failed run with
workflow_resume. workflow_list shows past runs, templates_list the workflow templates,
workflow_dependencies the step graph. Workflow files are paths under the server's root."""

File = Annotated[
    str | None,
    Field(
        description="a workflow file (.toml, .json, .yaml) relative to the server's root, or a "
        "template NAME or NAME@VERSION (see templates_list); give file or inline"
    ),
]
Inline = Annotated[
    str | dict[str, Any] | None,
    Field(
        description="the workflow document itself: text in inline_format, or a JSON object "
        "(only if the server allows inline workflows)"
    ),
]
InlineFormat = Annotated[Literal["toml", "json", "yaml"], Field(description="the format of inline")]
Params = Annotated[
    dict[str, Any] | None,
    Field(description="parameter values by name (the workflow's [params]), JSON-typed"),
]
RunId = Annotated[str, Field(description="a run id, a unique prefix of one, or 'last'")]


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn mcpp's errors into tool errors with the command line's messages."""
    try:
        yield
    except WorkflowError as exc:
        raise ToolError(f"invalid workflow: {_one_line(exc)}") from None
    except MCPPError as exc:
        raise ToolError(_one_line(exc)) from None
    except OSError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class Tools:
    """The state the tools share: the policy, the runs, the load lock."""

    def __init__(self, policy: Policy, runs: RunManager) -> None:
        self.policy = policy
        self.runs = runs
        self.load_lock = anyio.Lock()

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args)

    def _load(
        self,
        file: str | None,
        inline: str | dict[str, Any] | None,
        fmt: str,
        params: Any,
        run_id: str | None,
    ) -> WorkflowSpec:
        """Load and validate the workflow (blocking). Raises WorkflowError, RefusedError.

        An inline workflow is written to ``workflow.FORMAT`` in run ``run_id``'s folder (so
        the run and its resume read it), or to a temporary folder removed at once.
        """
        if (file is None) == (inline is None):
            raise WorkflowError("give exactly one of file and inline")
        if inline is not None:
            self.policy.check_inline()
            if run_id is not None:
                return _load_inline(private_folder(run_folder(run_id)), inline, fmt, params)
            with tempfile.TemporaryDirectory(prefix="mcpp-inline-") as folder:
                return _load_inline(Path(folder), inline, fmt, params)
        assert file is not None
        if looks_like_path(file):
            return load_workflow_spec(self.policy.resolve(file), params or {})
        template = TemplateRegistry(self.policy.template_dir).find(file)
        return load_workflow_spec(self.policy.resolve(template.path), params or {})

    async def load(
        self,
        file: str | None,
        inline: str | dict[str, Any] | None,
        fmt: str,
        params: Any,
        run_id: str | None = None,
    ) -> WorkflowSpec:
        """:meth:`_load` in a worker thread, one at a time."""
        async with self.load_lock:
            return await self.blocking(self._load, file, inline, fmt, params, run_id)

    async def resolve(self, text: str) -> str:
        """The run id ``text`` names (RunIdError, JournalError)."""
        return await self.blocking(views.resolve, text, dict(self.runs.runs))


def _load_inline(
    folder: Path, document: str | dict[str, Any], fmt: str, params: Any
) -> WorkflowSpec:
    """Write ``document`` to ``FOLDER/workflow.FORMAT`` (0600; an object as JSON) and load it;
    its errors name it ``inline workflow``."""
    if isinstance(document, dict):
        fmt, text = "json", msgspec.json.encode(document).decode()
    else:
        text = document
    path = folder / f"workflow.{fmt}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)
    try:
        return load_workflow_spec(path, params or {})
    except WorkflowError as exc:
        if exc.file == str(path):
            exc.in_file("inline workflow")
        raise


def build_server(policy: Policy, runs: RunManager) -> MCPServer:
    """The MCP server of ``policy`` whose runs ``runs`` owns."""
    server: MCPServer = MCPServer("mcpp", instructions=INSTRUCTIONS, log_level="WARNING")
    tools = Tools(policy, runs)
    _add_run_tools(server, tools)
    _add_read_tools(server, tools)
    _add_resources(server, tools)
    return server


def _add_run_tools(server: MCPServer, tools: Tools) -> None:
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
                message=f"invalid workflow: {_one_line(exc)}",
                file=exc.file,
                step=exc.step,
                field=exc.field,
            )
            return ValidateResult(valid=False, error=issue)
        except MCPPError as exc:
            raise ToolError(_one_line(exc)) from None
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
                        f"{journalled.running_pid}); stop it with SIGTERM to that pid"
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
        """Finish a run that did not succeed (cancelled, failed, interrupted) in the background:
        steps that succeeded keep their results, the others run again. Refused if its workflow
        file changed incompatibly (the step and field are named)."""
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
                async with tools.load_lock:
                    await tools.blocking(_check_unchanged, run)
            await runs.start(
                run_id, ["resume", run_id, "--json", "--quiet"], kind="resume", spec=run.spec
            )
        return SubmitResult(run_id=run_id, workflow=run.spec.name, steps=steps)


def _check_unchanged(run: JournalRun) -> None:
    """Raise WorkflowError if the run's workflow file changed incompatibly (as resume does)."""
    if run.source is not None and os.path.exists(run.source):
        current = load_workflow_spec(run.source, run.spec.params)
        check_compatible(run.spec, current, run_id=run.run_id)


def _add_read_tools(server: MCPServer, tools: Tools) -> None:
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
            reported = -1
            while True:
                owned = runs.get(run_id)
                view = await tools.blocking(views.result_view, run_id, owned)
                left = deadline - anyio.current_time()
                if view.finished or left <= 0:
                    return view
                steps = view.document["steps"].values()
                done = sum(1 for s in steps if s["status"] not in ("pending", "running"))
                if ctx is not None and done != reported:
                    reported = done
                    running = [
                        k for k, s in view.document["steps"].items() if s["status"] == "running"
                    ]
                    message = (
                        f"{done}/{len(steps)} steps finished; running: {', '.join(running) or '-'}"
                    )
                    await ctx.report_progress(done, len(steps), message)
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
                lambda: views.list_runs(runs.runs, status=status, workflow=workflow, limit=limit)
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
            int | None, Field(ge=1, description="one attempt (default: all)")
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


def _add_resources(server: MCPServer, tools: Tools) -> None:
    runs, policy = tools.runs, tools.policy

    @contextmanager
    def resource_errors() -> Iterator[None]:
        try:
            yield
        except MCPPError as exc:
            raise ResourceError(_one_line(exc)) from None

    @server.resource("mcpp://runs", mime_type="application/json", description="journalled runs")
    async def runs_resource() -> str:
        with resource_errors():
            found = await tools.blocking(
                lambda: views.list_runs(runs.runs, status=None, workflow=None, limit=100)
            )
            return found.model_dump_json()

    @server.resource(
        "mcpp://runs/{run_id}", mime_type="application/json", description="a run's result document"
    )
    async def run_resource(run_id: str) -> str:
        with resource_errors():
            run_id = await tools.resolve(run_id)
            view = await tools.blocking(views.result_view, run_id, runs.get(run_id))
            return msgspec.json.encode(view.document).decode()

    @server.resource(
        "mcpp://templates", mime_type="application/json", description="the workflow templates"
    )
    async def templates_resource() -> str:
        with resource_errors():
            found = await tools.blocking(views.templates, str(policy.template_dir))
            return found.model_dump_json()
