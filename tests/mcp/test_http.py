"""``mcpp mcp --http``: the same tools over streamable HTTP, once, with the SDK's own client."""

from __future__ import annotations

import signal
import sys

import anyio
import pytest

from tests.mcp.client import ROOT, call, call_error, http_session, start_http, wait_status
from tests.world import World, descendants, gone, wait_for, wait_for_file

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the MCP tests count processes through /proc"
)

GATED = """
[workflow]
name = "gated"

[[steps]]
id = "wait"
run = "tests.steps.mcp_steps:gate"
args = {{ mark = "{mark}", gate = "{gate}" }}
"""


def test_the_tools_over_http(world: World) -> None:
    flows = ROOT / "examples"
    mark = world.workdir / "wait.pid"
    gated = world.workdir / "gated.toml"
    gated.write_text(GATED.format(mark=mark, gate=world.workdir / "gate"))
    server, url = start_http(world, "--root", str(ROOT), "--allow-inline", cwd=ROOT)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")

    async def main() -> None:
        async with http_session(url) as client:
            assert len((await client.list_tools()).tools) == 10
            text = await call_error(client, "workflow_validate", file=str(gated))
            assert "outside the server's roots" in text
            run_id = (await call(client, "workflow_submit", file="examples/wordcount.toml"))[
                "run_id"
            ]
            await wait_status(client, run_id, "the end", lambda s: s["finished"])
            result = await call(client, "workflow_result", run_id=run_id)
            assert result["status"] == "succeeded"
            assert result["document"]["steps"]["reduce"]["result"]["words"] > 0
            long_id = (await call(client, "workflow_submit", inline=gated.read_text()))["run_id"]
            step_pid = int(await anyio.to_thread.run_sync(wait_for_file, mark, 60))
            cancelled = await call(client, "workflow_cancel", run_id=long_id)
            assert cancelled["status"] == "cancelled" and gone(step_pid)
            assert [p.pid for p in descendants()] == [server.pid]  # only the server is left

    anyio.run(main, backend="asyncio")
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0
    wait_for(lambda: not descendants(), 10, "nothing left")
    assert flows.is_dir()
