"""The ``status`` and ``resume`` commands, on :mod:`mcpp.supervisor.resume` and the journal."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

import msgspec
import trio
from rich.console import Console

from mcpp.cli.failures import print_failures
from mcpp.cli.output import document_stdout
from mcpp.cli.progress import Progress, summary
from mcpp.errors import WorkflowError
from mcpp.supervisor.journal import Journal, JournalError
from mcpp.supervisor.resume import resume_async

__all__ = ["add_resume", "add_status"]

EXIT_USAGE = 2


def add_status(commands: Any) -> None:
    """Add ``status [RUN_ID] [--json]``."""
    status = commands.add_parser("status", help="list journalled runs, or show one run")
    status.set_defaults(func=status_command)
    status.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show")
    status.add_argument("--json", action="store_true", help="print one JSON document")


def add_resume(commands: Any) -> None:
    """Add ``resume RUN_ID [--json]``."""
    command = commands.add_parser("resume", help="finish a run that did not succeed")
    command.set_defaults(func=resume_command)
    command.add_argument("run_id", metavar="RUN_ID", help="the run to finish")
    command.add_argument(
        "--json", action="store_true", help="print the result as one JSON document"
    )
    command.add_argument("--quiet", action="store_true", help="no progress output")


def status_command(args: argparse.Namespace) -> int:
    """Run ``status``: 0 when shown, 2 for an unknown run id."""
    try:
        with Journal.open() as journal:
            if args.run_id is None:
                runs = journal.runs()
            else:
                result = journal.load(args.run_id).result
    except JournalError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.run_id is not None:
        if args.json:
            sys.stdout.buffer.write(result.to_json() + b"\n")
        else:
            console = Console()
            summary(result, console)
            print_failures(result, console)
        return 0
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode({"runs": runs}) + b"\n")
        return 0
    if not runs:
        print(f"no runs in {journal.path}")
    for run in runs:
        line = f"{run.run_id}  {run.status:<11}  {run.started_at}  {run.duration_s:9.2f} s"
        print(f"{line}  {run.workflow}")
    return 0


def resume_command(args: argparse.Namespace) -> int:
    """Run ``resume``; the exit codes of ``spawn`` (2 for an unknown or running run)."""
    try:
        with (
            document_stdout(args.json) as out,
            Progress(quiet=args.quiet or args.json) as progress,
        ):
            result = trio.run(
                partial(resume_async, args.run_id, on_event=progress.on_event, handle_signals=True)
            )
            if args.json:
                out.write(result.to_json() + b"\n")
                out.flush()
    except JournalError as exc:
        print(f"mcpp: cannot resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WorkflowError as exc:
        print(f"mcpp: cannot resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.json:
        console = Console()
        summary(result, console)
        print_failures(result, console)
    return result.exit_code
