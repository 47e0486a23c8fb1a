"""Serve the MCP server over stdio or streamable HTTP until told to stop, then end its runs.

The server stops when its client goes (for stdio: stdin closed, or nobody reading stdout), on
SIGTERM, SIGINT or SIGHUP. Then its :class:`~mcpp.mcp.runs.RunManager` cancels the runs still
going and waits for them (unless ``--keep-runs``): no run child outlives :func:`serve`.

Over stdio the SDK points fd 1 at stderr while it serves, so nothing a step or an imported step
module prints can reach the wire (run children do not even share the server's stdout).
Over HTTP the listening socket is bound before uvicorn starts, so ``--http 127.0.0.1:0`` works:
the address is printed on stderr (``mcpp mcp: serving on http://HOST:PORT/mcp``).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.abc
from mcp.server.mcpserver import MCPServer

from mcpp.mcp.policy import Policy
from mcpp.mcp.runs import RunManager
from mcpp.mcp.server import build_server
from mcpp.supervisor import signals as early

__all__ = ["serve"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WIRE_POLL = 0.2  # how often the stdio server looks whether its client still reads
EXIT_GRACE = 0.5  # after the runs ended: how long the transport may take to let go


async def _watch_signals(stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(*STOP_SIGNALS) as received:
        task_status.started()
        if early.pending:  # a signal came while the SDK was importing
            stop.set()
        async for _ in received:
            stop.set()


async def serve(policy: Policy, http: tuple[str, int] | None = None) -> None:
    """Serve until the client leaves or a stop signal; end the runs (unless kept); return."""
    async with RunManager.open(policy) as runs, anyio.create_task_group() as tg:
        stop = anyio.Event()
        await tg.start(_watch_signals, stop)
        server = build_server(policy, runs)
        if http is None:
            tg.start_soon(_serve_stdio, server, stop)
            await stop.wait()
            # The SDK reads stdin in a thread that no cancel reaches: while the client keeps
            # stdin open (after a signal, or with stdout broken) its task cannot end. So the
            # runs end first, then the process exits, by force if that thread holds it.
            with anyio.CancelScope(shield=True):
                if not policy.keep_runs:
                    await runs.end_all()
            _exit_soon()
        else:
            await _serve_http(server, *http, stop)
        tg.cancel_scope.cancel()


async def _serve_stdio(server: MCPServer, stop: anyio.Event) -> None:
    """Serve over stdio; set ``stop`` when the client closes stdin or stops reading."""
    wire = os.dup(1)  # the client's end of the wire, before the SDK points fd 1 at stderr
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_wire, wire, stop)
            try:
                await server.run_stdio_async()
            except* (ConnectionError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                _gone()
            stop.set()
            tg.cancel_scope.cancel()
    finally:
        os.close(wire)


async def _watch_wire(fd: int, stop: anyio.Event) -> None:
    """Set ``stop`` once nobody reads the wire (a client that died without closing our stdin:
    the pipe reports an error). Looks every :data:`WIRE_POLL` seconds."""
    poller = select.poll()
    poller.register(fd, 0)  # only the conditions poll always reports: error, hang-up
    while not poller.poll(0):  # noqa: ASYNC110 (a pipe's error has no event to wait on)
        await anyio.sleep(WIRE_POLL)
    _gone()
    stop.set()


def _gone() -> None:
    print("mcpp mcp: the client went away", file=sys.stderr, flush=True)


def _exit_soon() -> None:
    """Exit the process in :data:`EXIT_GRACE` seconds unless it has exited by then."""

    def leave() -> None:
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(EXIT_GRACE, leave)
    timer.daemon = True
    timer.start()


async def _serve_http(server: MCPServer, host: str, port: int, stop: anyio.Event) -> None:
    """Streamable HTTP on ``host:port`` (uvicorn), until ``stop``."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:  # serve() watches the signals itself
            yield

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections from now on wait in the backlog until uvicorn accepts
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    app = server.streamable_http_app(host=host)
    web = Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:

        async def stopper() -> None:
            await stop.wait()
            web.should_exit = True

        tg.start_soon(stopper)
        print(
            f"mcpp mcp: serving on http://{shown}:{sock.getsockname()[1]}/mcp",
            file=sys.stderr,
            flush=True,
        )
        await web.serve(sockets=[sock])
        tg.cancel_scope.cancel()
