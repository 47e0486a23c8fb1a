"""The runs a ``mcpp mcp`` server owns, when the client goes or the server is stopped: cancelled
and journalled as such (then resumable), or kept with ``--keep-runs``; never a process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcpp.supervisor.journal import Journal
from tests.mcp.client import (
    GATED,
    call,
    call_error,
    http_session,
    mcp_env,
    server_argv,
    session,
    start_http,
    wait_status,
    write_flow,
)
from tests.world import World, descendants, gone, wait_for, wait_for_file

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the MCP tests count processes through /proc"
)


INFO = {"name": "a test client", "version": "1"}


def gated(world: World, name: str = "gated") -> tuple[Path, Path, Path]:
    """A workflow whose step ``wait`` writes its pid to ``mark`` and waits for ``gate``."""
    mark, gate = world.workdir / f"{name}.pid", world.workdir / f"{name}.gate"
    body = GATED.format(mark=mark, gate=gate)
    return write_flow(world.workdir / "flows" / f"{name}.toml", body), mark, gate


def journalled(world: World, run_id: str) -> dict[str, str]:
    """The run's status and its steps' statuses, read from the journal."""
    with Journal.open(world.home) as journal:
        result = journal.load(run_id).result
    return {"run": result.status, **{k: str(v.status) for k, v in result.steps.items()}}


def run(fn: object, *args: object) -> None:
    anyio.run(fn, *args, backend="asyncio")  # type: ignore[arg-type]


def test_closing_the_client_cancels_the_run_and_resume_finishes_it(world: World) -> None:
    flow, mark, gate = gated(world)
    started: list[str] = []

    async def first() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            started.append((await call(client, "workflow_submit", file="gated.toml"))["run_id"])
            await anyio.to_thread.run_sync(wait_for_file, mark, 60)
            await wait_status(
                client, started[0], "wait running", lambda s: s["running"] == ["wait"]
            )
        # The client closed stdin: the server cancelled its run before it exited.

    run(first)
    run_id = started[0]
    wait_for(lambda: not descendants(), 15, "every process of the run gone")
    assert journalled(world, run_id) == {
        "run": "cancelled",
        "first": "succeeded",
        "wait": "cancelled",
    }
    gate.touch()

    async def second() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            resumed = await call(client, "workflow_resume", run_id=run_id)
            assert resumed["run_id"] == run_id and resumed["status"] == "running"
            result = await call(client, "workflow_result", run_id=run_id, wait_s=60)
            assert result["finished"] is True and result["status"] == "succeeded", result
            steps = result["document"]["steps"]
            assert steps["wait"]["result"] == "opened"
            assert steps["first"]["attempts"] == 1 and steps["first"]["result"] == 3  # not re-run
            again = await call(client, "workflow_resume", run_id=run_id[:8])  # a prefix
            assert again == {**resumed, "status": "succeeded"}  # nothing left to run

    run(second)
    assert journalled(world, run_id)["run"] == "succeeded"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_server_cancels_its_runs(world: World, signum: int) -> None:
    # SIGTERM: the server cancels its runs and exits 0; SIGKILL: each run child gets SIGTERM
    # from the kernel (its parent-death signal) and cancels itself. Over HTTP, once.
    flow, mark, _ = gated(world)
    server, url = start_http(world, "--root", str(flow.parent))
    run_ids: list[str] = []

    async def submit() -> None:
        async with http_session(url) as client:
            run_ids.append((await call(client, "workflow_submit", file=flow.name))["run_id"])
            await wait_status(
                client, run_ids[0], "wait running", lambda s: s["running"] == ["wait"]
            )

    run(submit)
    step_pid = int(wait_for_file(mark, 60))
    server.send_signal(signum)
    assert server.wait(timeout=60) == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    wait_for(lambda: gone(step_pid) and not descendants(), 30, "the run's processes gone")
    assert journalled(world, run_ids[0]) == {
        "run": "cancelled",
        "first": "succeeded",
        "wait": "cancelled",
    }


def test_keep_runs_lets_a_run_finish_after_the_server_left(world: World) -> None:
    flow, mark, gate = gated(world)
    started: list[str] = []

    async def main() -> None:
        async with session(world, "--root", str(flow.parent), "--keep-runs") as client:
            started.append((await call(client, "workflow_submit", file="gated.toml"))["run_id"])
            await anyio.to_thread.run_sync(wait_for_file, mark, 60)

    run(main)
    step_pid = int(mark.read_text())
    assert not gone(step_pid)  # the server is gone, its run is not
    wait_for(lambda: journalled(world, started[0])["wait"] == "running", 30, "wait running")
    gate.touch()
    wait_for(lambda: journalled(world, started[0])["run"] == "succeeded", 60, "the kept run done")
    wait_for(lambda: not descendants(), 15, "the kept run's processes gone")


def test_runs_beyond_the_limit_are_refused(world: World) -> None:
    flow, _, _ = gated(world)

    async def main() -> None:
        async with session(world, "--root", str(flow.parent), "--max-runs", "1") as client:
            run_id = (await call(client, "workflow_submit", file="gated.toml"))["run_id"]
            await wait_status(client, run_id, "wait running", lambda s: s["running"] == ["wait"])
            text = await call_error(client, "workflow_submit", file="gated.toml")
            assert "already runs 1 workflows" in text and run_id in text and "--max-runs 1" in text
            text = await call_error(client, "workflow_resume", run_id=run_id)
            assert "still running" in text
            await call(client, "workflow_cancel", run_id=run_id)
            listed = await call(client, "workflow_list")
            assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [(run_id, "cancelled")]

    run(main)


def test_cancel_refuses_a_run_the_server_did_not_start(world: World) -> None:
    flow, mark, _ = gated(world)
    cli = world.spawn(
        [sys.executable, "-m", "mcpp.supervisor", "spawn", "--json", str(flow)],
        cwd=world.cwd,
        env=mcp_env(world),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_file(mark, 60)

    async def main() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            listed = await call(client, "workflow_list", status="running")
            assert [row["owned"] for row in listed["runs"]] == [False]
            text = await call_error(client, "workflow_cancel", run_id="last")
            assert "not started by this server" in text and str(cli.pid) in text
            assert f"mcpp cancel {listed['runs'][0]['run_id']}" in text

    run(main)
    os.kill(cli.pid, signal.SIGTERM)
    assert cli.wait(timeout=60) == 130


class RawClient:
    """``mcpp mcp`` over stdio with JSON-RPC lines written by hand: a client that can misbehave
    (stop reading, keep stdin open) as the SDK's client never does."""

    def __init__(self, world: World, *args: str) -> None:
        with (world.workdir / "server.err").open("wb") as err:
            self.proc = world.spawn(
                server_argv(*args),
                cwd=world.cwd,
                env=mcp_env(world),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.ids = 0
        self.request("initialize", {**HELLO, "clientInfo": INFO})
        self.send({"method": "notifications/initialized"})

    def send(self, message: dict[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, object]) -> dict[str, object]:
        """Send a request and read its reply (the server sends nothing else unasked here)."""
        self.ids += 1
        self.send({"id": self.ids, "method": method, "params": params})
        assert self.proc.stdout is not None
        reply: dict[str, object] = json.loads(self.proc.stdout.readline())
        assert reply["id"] == self.ids, reply
        return reply

    def submit(self, file: str) -> str:
        params = {"name": "workflow_submit", "arguments": {"file": file}}
        result = self.request("tools/call", params)["result"]
        return str(result["structuredContent"]["run_id"])  # type: ignore[index]


HELLO = {"protocolVersion": "2025-06-18", "capabilities": {}}


def test_a_client_that_stops_reading_ends_the_server_and_its_runs(world: World) -> None:
    # A client that died without closing the server's stdin: nobody reads the wire any more.
    flow, mark, _ = gated(world)
    client = RawClient(world, "--root", str(flow.parent))
    run_id = client.submit(flow.name)
    step_pid = int(wait_for_file(mark, 60))
    assert client.proc.stdout is not None and client.proc.stdin is not None
    client.proc.stdout.close()
    assert client.proc.wait(timeout=60) == 0
    assert "the client went away" in (world.workdir / "server.err").read_text()
    wait_for(lambda: gone(step_pid) and not descendants(), 30, "the run's processes gone")
    assert journalled(world, run_id) == {
        "run": "cancelled",
        "first": "succeeded",
        "wait": "cancelled",
    }
    client.proc.stdin.close()


def test_sigterm_ends_a_stdio_server_whose_client_keeps_stdin_open(world: World) -> None:
    flow, mark, _ = gated(world)
    client = RawClient(world, "--root", str(flow.parent))
    run_id = client.submit(flow.name)
    step_pid = int(wait_for_file(mark, 60))
    client.proc.send_signal(signal.SIGTERM)
    assert client.proc.wait(timeout=60) == 0  # though the SDK's stdin reader still waits
    wait_for(lambda: gone(step_pid) and not descendants(), 30, "the run's processes gone")
    assert journalled(world, run_id) == {
        "run": "cancelled",
        "first": "succeeded",
        "wait": "cancelled",
    }
    assert client.proc.stdin is not None and client.proc.stdout is not None
    client.proc.stdin.close()
    client.proc.stdout.close()
