"""The ``status`` and ``resume`` commands, on :mod:`mcpp.supervisor.resume` and the journal.

Both take a run id as a whole id, a unique prefix or ``last`` (:func:`mcpp.home.resolve_run_id`).
``status`` only reads: it opens the journal read-only and creates nothing, and with no journal
says where it looked.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

from mcpp.cli.output import document_stdout, stdout_console
from mcpp.errors import WorkflowError

__all__ = ["add_resume", "add_status", "no_runs_here"]

EXIT_USAGE = 2


def add_status(commands: Any) -> None:
    """Add ``status [RUN_ID] [--json]``."""
    status = commands.add_parser("status", help="list journalled runs, or show one run")
    status.set_defaults(func=status_command)
    status.add_argument(
        "run_id", nargs="?", metavar="RUN_ID", help="the run to show (id, unique prefix or last)"
    )
    status.add_argument("--json", action="store_true", help="print one JSON document")


def add_resume(commands: Any) -> None:
    """Add ``resume RUN_ID [--json]``."""
    command = commands.add_parser("resume", help="finish a run that did not succeed")
    command.set_defaults(func=resume_command)
    command.add_argument(
        "run_id", metavar="RUN_ID", help="the run to finish (id, unique prefix or last)"
    )
    command.add_argument(
        "--json", action="store_true", help="print the result as one JSON document"
    )
    command.add_argument("--quiet", action="store_true", help="no progress output")


def no_runs_here() -> str:
    """The line that says where the journal was looked for."""
    from mcpp.home import mcpp_home

    return (
        f"no runs in {mcpp_home().absolute()} "
        "(no journal there; set MCPP_HOME to look in another folder)"
    )


def status_command(args: argparse.Namespace) -> int:
    """Run ``status``: 0 when shown (no journal: nothing to show), 2 for an unknown run id."""
    import msgspec

    from mcpp.home import RunIdError
    from mcpp.supervisor.journal import Journal, JournalError

    try:
        journal = Journal.open_readonly()
        if journal is None:
            if args.run_id is not None:
                print(f"mcpp: {no_runs_here()}", file=sys.stderr)
                return EXIT_USAGE
            if args.json:
                sys.stdout.buffer.write(msgspec.json.encode({"runs": []}) + b"\n")
            print(no_runs_here(), file=sys.stderr if args.json else sys.stdout)
            return 0
        with journal:
            if args.run_id is None:
                runs = journal.runs()
            else:
                result = journal.load(journal.resolve(args.run_id)).result
    except (JournalError, RunIdError) as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.run_id is not None:
        if args.json:
            sys.stdout.buffer.write(result.to_json() + b"\n")
        else:
            from mcpp.cli.failures import print_failures
            from mcpp.cli.progress import summary

            console = stdout_console()
            summary(result, console)
            print_failures(result, console)
        return 0
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode({"runs": runs}) + b"\n")
        return 0
    if not runs:
        print(f"no runs in {journal.path.absolute()}")
    for run in runs:
        line = f"{run.run_id}  {run.status:<11}  {run.started_at}  {run.duration_s:9.2f} s"
        print(f"{line}  {run.workflow}")
    return 0


def _announce(line: str) -> None:
    print(f"mcpp: {line}", file=sys.stderr, flush=True)


def resume_command(args: argparse.Namespace) -> int:
    """Run ``resume``; the exit codes of ``spawn`` (2 for an unknown or running run).

    Each succeeded step that runs again (it changed) gets a line on stderr, before anything
    runs.
    """
    import trio

    from mcpp.cli.failures import print_failures
    from mcpp.cli.progress import Progress, summary
    from mcpp.home import RunIdError
    from mcpp.supervisor.journal import JournalError
    from mcpp.supervisor.resume import resume_async

    try:
        with (
            document_stdout(args.json) as out,
            Progress(quiet=args.quiet or args.json) as progress,
        ):
            result = trio.run(
                partial(
                    resume_async,
                    args.run_id,
                    on_event=progress.on_event,
                    handle_signals=True,
                    announce=_announce,
                )
            )
            if args.json:
                out.write(result.to_json() + b"\n")
                out.flush()
    except (JournalError, RunIdError, WorkflowError) as exc:
        print(f"mcpp: cannot resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.json:
        console = stdout_console()
        summary(result, console)
        print_failures(result, console)
    return result.exit_code
