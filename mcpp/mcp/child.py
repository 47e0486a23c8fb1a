"""``python -m mcpp.mcp.child [--server PID] -- COMMAND...``: one run of the MCP server.

It runs ``mcpp COMMAND...`` (``spawn --json ...`` or ``resume RUN_ID --json``) in this process,
exactly as the command line would. With ``--server PID`` the run ends with the server: the kernel
sends this process SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), even if the server was
SIGKILLed, and SIGTERM cancels a run (exit 130, the run journalled as cancelled, resumable). Set
as the first thing here, then the parent is checked once: a server that died before that is
seen, not missed. Without ``--server`` (``mcpp mcp --keep-runs``) the run goes on alone.

``PR_SET_PDEATHSIG`` fires when the *thread* that started the child ends; the server starts
children from its event loop, in its main thread, so it fires when the server exits.
"""

# ruff: noqa: E402 (the early signal handler goes in before the imports)
from __future__ import annotations

import sys

from mcpp.supervisor import signals

signals.install()

import ctypes
import os
import signal
from collections.abc import Sequence

__all__ = ["main"]

PR_SET_PDEATHSIG = 1
EXIT_INTERRUPTED = 130


def _die_with(parent: int) -> bool:
    """Ask for SIGTERM when the parent dies; False if ``parent`` is no longer the parent."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command after ``--``; return its exit code (130 if the server is already gone)."""
    args = list(sys.argv[1:] if argv is None else argv)
    options, command = (
        ([], args)
        if "--" not in args
        else (
            args[: args.index("--")],
            args[args.index("--") + 1 :],
        )
    )
    if options[:1] == ["--server"] and not _die_with(int(options[1])):
        return EXIT_INTERRUPTED
    from mcpp.cli.main import main as cli_main

    return cli_main(command)


if __name__ == "__main__":
    sys.exit(main())
