"""The MCP server of ``mcpp mcp`` (on the ``mcp`` SDK's :class:`MCPServer`): its tools
(:mod:`mcpp.mcp.run_tools`, :mod:`mcpp.mcp.read_tools`) and its resources.

Every tool is typed: the SDK publishes the JSON Schema of its arguments and of its
:mod:`mcpp.mcp.models` result. Resources: ``mcpp://runs`` (journalled runs),
``mcpp://runs/{run_id}`` (a run's result document), ``mcpp://templates``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from mcpp.errors import MCPPError
from mcpp.mcp import views
from mcpp.mcp.policy import Policy
from mcpp.mcp.read_tools import add_read_tools
from mcpp.mcp.run_tools import add_run_tools
from mcpp.mcp.runs import RunManager
from mcpp.mcp.toolkit import Tools, one_line

__all__ = ["INSTRUCTIONS", "build_server"]

INSTRUCTIONS = """\
mcpp runs workflows: DAGs of Python steps, each step in its own process. Check a workflow with
workflow_validate, start it with workflow_submit (it returns a run_id at once), follow it with
workflow_status or wait for it with workflow_result (wait_s), read a step's output with
workflow_logs, stop it with workflow_cancel, finish a cancelled or failed run with
workflow_resume. workflow_list shows past runs, templates_list the workflow templates,
workflow_dependencies the step graph. Workflow files are paths under the server's root."""


def build_server(policy: Policy, runs: RunManager) -> MCPServer:
    """The MCP server of ``policy`` whose runs ``runs`` owns."""
    server: MCPServer = MCPServer("mcpp", instructions=INSTRUCTIONS, log_level="WARNING")
    tools = Tools(policy, runs)
    add_run_tools(server, tools)
    add_read_tools(server, tools)
    _add_resources(server, tools)
    return server


def _add_resources(server: MCPServer, tools: Tools) -> None:
    runs, policy = tools.runs, tools.policy

    @contextmanager
    def resource_errors() -> Iterator[None]:
        try:
            yield
        except MCPPError as exc:
            raise ResourceError(one_line(exc)) from None

    @server.resource("mcpp://runs", mime_type="application/json", description="journalled runs")
    async def runs_resource() -> str:
        with resource_errors():
            found = await tools.blocking(
                lambda: views.list_runs(dict(runs.runs), status=None, workflow=None, limit=100)
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
