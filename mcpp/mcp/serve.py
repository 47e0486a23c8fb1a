"""Serve the MCP server over stdio or streamable HTTP until told to stop, then end its runs.

The server stops when its client goes (stdin closed, for stdio), on SIGTERM, SIGINT or SIGHUP.
Then its :class:`~mcpp.mcp.runs.RunManager` cancels the runs still going and waits for them
(unless ``--keep-runs``): leaving this module's :func:`serve` means no run child is left.

Over stdio the SDK points fd 1 at stderr while it serves, so nothing a step or an imported step
module prints can reach the wire; children get files of their own for stdout and stderr anyway.
Over HTTP the listening socket is bound before uvicorn starts, so ``--http 127.0.0.1:0`` works:
the address is printed on stderr (``mcpp mcp: serving on http://HOST:PORT/mcp``).
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.abc

from mcpp.mcp.policy import Policy
from mcpp.mcp.runs import RunManager
from mcpp.mcp.server import build_server
from mcpp.supervisor import signals as early

__all__ = ["serve"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def _watch_signals(stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(*STOP_SIGNALS) as received:
        task_status.started()
        if early.pending:  # a signal came while the SDK was importing
            stop.set()
        async for _ in received:
            stop.set()


async def serve(policy: Policy, http: tuple[str, int] | None = None) -> None:
    """Serve until the client leaves (stdio) or a stop signal; cancel the runs; return."""
    async with RunManager.open(policy) as runs, anyio.create_task_group() as tg:
        stop = anyio.Event()
        await tg.start(_watch_signals, stop)
        server = build_server(policy, runs)
        if http is None:

            async def stdio() -> None:
                await server.run_stdio_async()
                stop.set()

            tg.start_soon(stdio)
            await stop.wait()
        else:
            await _serve_http(server, *http, stop)
        tg.cancel_scope.cancel()


async def _serve_http(server: object, host: str, port: int, stop: anyio.Event) -> None:
    """Streamable HTTP on ``host:port`` (uvicorn), until ``stop``."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    assert isinstance(server, MCPServer)

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
