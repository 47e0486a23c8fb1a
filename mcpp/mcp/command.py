"""``mcpp mcp``: serve mcpp's workflow tools to an MCP client (stdio, or ``--http``).

Registering the command imports nothing of the SDK: ``mcpp --help`` stays fast and works
without the ``mcp`` extra. Running it without the extra says how to install it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mcpp.errors import RefusedError
from mcpp.mcp.policy import DEFAULT_MAX_RUNS, Policy, parse_http

__all__ = ["add_mcp", "mcp_command"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MISSING_EXTRA = (
    "mcpp: the MCP server needs the 'mcp' extra: pip install 'mcpp[mcp]' "
    "(with uv: uv run --extra mcp mcpp mcp)"
)


def add_mcp(commands: Any) -> None:
    """Add ``mcp [--http HOST:PORT] [--root DIR] [--allow-inline] [--keep-runs] ...``."""
    command = commands.add_parser(
        "mcp",
        help="serve workflows as tools to an MCP client (assistants, IDEs); stdio by default",
        description="An MCP server whose tools validate, run, watch and cancel workflows. A "
        "client can run every workflow file under --root, so any step function importable "
        "from there (and with --allow-inline, any importable function at all).",
    )
    command.set_defaults(func=mcp_command)
    command.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (loopback only "
        "unless --allow-remote; port 0 picks a free port, printed on stderr)",
    )
    command.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --http listen on a non-loopback address (there is no authentication)",
    )
    command.add_argument(
        "--root",
        metavar="DIR",
        default=".",
        help="run only workflow files under DIR (symlinks resolved; default: the working "
        "directory)",
    )
    command.add_argument(
        "--templates",
        metavar="DIR",
        help="the template folder (default: $MCPP_TEMPLATES, else ROOT/templates); trusted "
        "like --root",
    )
    command.add_argument(
        "--allow-inline",
        action="store_true",
        help="accept workflow documents sent by the client (they can run any importable function)",
    )
    command.add_argument(
        "--max-runs",
        type=int,
        default=DEFAULT_MAX_RUNS,
        metavar="N",
        help=f"runs at once (default {DEFAULT_MAX_RUNS})",
    )
    command.add_argument(
        "--keep-runs",
        action="store_true",
        help="when the server exits, let its runs finish instead of cancelling them",
    )


def mcp_command(args: argparse.Namespace) -> int:
    """Serve until the client leaves or a signal; 2 for bad options, 130 if interrupted."""
    try:
        http = None if args.http is None else parse_http(args.http, allow_remote=args.allow_remote)
        policy = Policy.make(
            args.root,
            args.templates or os.environ.get("MCPP_TEMPLATES") or None,
            allow_inline=args.allow_inline,
            max_runs=args.max_runs,
            keep_runs=args.keep_runs,
        )
    except RefusedError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import anyio

        from mcpp.mcp.serve import serve
    except ImportError as exc:
        print(f"{MISSING_EXTRA} ({exc})", file=sys.stderr)
        return EXIT_USAGE
    anyio.run(serve, policy, http)  # asyncio: anyio's trio backend needs a newer trio
    return 0
