"""Drive a real ``mcpp mcp`` subprocess with the SDK's own ClientSession (asyncio, in sync tests).

pytest-trio runs the async tests on trio, while the MCP client needs asyncio (anyio's trio
backend cannot run on trio 0.23.2): the MCP tests are sync functions that call
``anyio.run(..., backend="asyncio")`` themselves.

While a session is open the :class:`~tests.world.World` reaper is paused: the server is a child
of the test process started by the SDK, and the reaper must not take its exit status from
asyncio. It is turned back on when the session closes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.world import ROOT, World, cli_env, wait_for

__all__ = [
    "GATED",
    "call",
    "call_error",
    "http_session",
    "mcp_env",
    "server_argv",
    "session",
    "start_http",
    "wait_status",
    "write_flow",
]


def mcp_env(world: World) -> dict[str, str]:
    """The CLI tests' environment (tests.world.cli_env), and no ``__pycache__`` written: the
    server and its runs import ``examples/`` from the repository, whose listing a test pins."""
    return {**cli_env(world), "PYTHONDONTWRITEBYTECODE": "1"}


def server_argv(*args: str) -> list[str]:
    """``python -m mcpp.supervisor mcp ARGS``."""
    return [sys.executable, "-m", "mcpp.supervisor", "mcp", *args]


@asynccontextmanager
async def session(
    world: World, *args: str, cwd: Path | None = None
) -> AsyncIterator[ClientSession]:
    """An initialised ClientSession to ``mcpp mcp ARGS`` (cwd ``world.cwd`` by default)."""
    argv = server_argv(*args)
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], env=mcp_env(world), cwd=str(cwd or world.cwd)
    )
    world.reap = False
    errlog = (world.workdir / "server.err").open("a")
    try:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            yield client
    finally:
        errlog.close()
        world.reap = True


async def call(client: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call ``tool``; fail unless it succeeded; return its structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None, result
    return result.structured_content


async def call_error(client: ClientSession, tool: str, **arguments: Any) -> str:
    """Call ``tool``; fail unless it returned a tool error; return the error's text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} did not fail: {result.structured_content}"
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert "Traceback" not in text, text
    return text


async def wait_status(
    client: ClientSession,
    run_id: str,
    what: str,
    ok: Callable[[dict[str, Any]], bool],
    limit: float = 60,
) -> dict[str, Any]:
    """Poll ``workflow_status`` (for ``limit`` s at most) until ``ok(status)``; return it."""
    deadline = time.monotonic() + limit
    while not ok(status := await call(client, "workflow_status", run_id=run_id)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
        await anyio.sleep(0.05)
    return status


def start_http(world: World, *args: str, cwd: Path | None = None) -> tuple[Any, str]:
    """Start ``mcpp mcp --http 127.0.0.1:0 ARGS`` (the test owns it); return it and its URL."""
    err_path = world.workdir / "http-server.err"
    with err_path.open("wb") as err:
        server = world.spawn(
            server_argv("--http", "127.0.0.1:0", *args),
            cwd=cwd or world.cwd,
            env=mcp_env(world),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

    def url() -> str | None:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {err_path.read_text(errors='replace')}")
        for line in err_path.read_text(errors="replace").splitlines():
            if line.startswith("mcpp mcp: serving on "):
                return line.rsplit(" ", 1)[1]
        return None

    return server, str(wait_for(url, 60, "the server's address"))


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    """An initialised ClientSession over streamable HTTP to ``url``."""
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


GATED = """
[workflow]
name = "gated"

[[steps]]
id = "first"
run = "tests.steps.fault_steps:number"
args = {{ value = 3 }}

[[steps]]
id = "wait"
run = "tests.steps.mcp_steps:gate"
args = {{ mark = "{mark}", gate = "{gate}" }}
depends_on = ["first"]
"""
"""A workflow (format with ``mark`` and ``gate``) whose step ``wait`` writes its pid to
``mark`` and waits for the file ``gate``."""


def write_flow(path: Path, body: str) -> Path:
    """Write a workflow file (TOML) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


__all__ += ["ROOT"]
