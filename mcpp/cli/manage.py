"""``mcpp cancel RUN_ID`` and ``mcpp runs ls|rm|prune``: managing journalled runs.

Run ids are whole ids, unique prefixes or ``last``. ``runs ls`` only reads (the journal is
opened read-only; nothing is created). ``runs rm`` and ``runs prune`` remove runs that are not
running: their journal rows and their folders under ``$MCPP_HOME/runs/`` (logs, large
results), then give the freed space back (VACUUM). A running run is never removed: cancel it
first.

Exit codes: 0 done; 1 ``cancel`` of a run that is not running (or that did not stop),
``rm`` of a running run; 2 usage (an unknown or ambiguous run id, a bad ``--older-than``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from mcpp.cli.runs import no_runs_here, status_command
from mcpp.home import RunIdError

if TYPE_CHECKING:  # the commands import these when they run: ``mcpp --help`` stays fast
    from mcpp.supervisor.journal import Journal

__all__ = ["add_cancel", "add_runs"]

EXIT_USAGE = 2


def add_cancel(commands: Any) -> None:
    """Add ``cancel RUN_ID [--wait S]``."""
    cancel = commands.add_parser("cancel", help="stop a run started elsewhere (resumable)")
    cancel.set_defaults(func=cancel_command)
    cancel.add_argument("run_id", metavar="RUN_ID", help="the run to stop (id, prefix or last)")
    cancel.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the run to end (default 30)",
    )


def add_runs(commands: Any) -> None:
    """Add ``runs ls``, ``runs rm RUN_ID...`` and ``runs prune``."""
    runs = commands.add_parser("runs", help="list, remove or prune journalled runs")
    actions = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="the journalled runs, newest first")
    ls.set_defaults(func=ls_command)
    ls.add_argument("--json", action="store_true", help="print one JSON document")
    rm = actions.add_parser("rm", help="remove runs: journal rows, logs and result files")
    rm.set_defaults(func=rm_command)
    rm.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="id, unique prefix or last")
    prune = actions.add_parser("prune", help="remove old runs and free their space")
    prune.set_defaults(func=prune_command)
    prune.add_argument(
        "--older-than", metavar="AGE", help="runs started more than AGE ago (7d, 12h, 30m)"
    )
    prune.add_argument("--keep", type=int, metavar="N", help="all but the N newest runs")
    prune.add_argument("--json", action="store_true", help='print {"removed": [RUN_ID, ...]}')


def cancel_command(args: argparse.Namespace) -> int:
    """Run ``cancel``: SIGTERM the run's supervisor (checked to be the journalled process)."""
    from mcpp.supervisor.journal import Journal, JournalError
    from mcpp.supervisor.manage import cancel_run

    try:
        journal = Journal.open_readonly()
        if journal is None:
            print(f"mcpp: {no_runs_here()}", file=sys.stderr)
            return EXIT_USAGE
        with journal:
            run_id = journal.resolve(args.run_id)
            session = cancel_run(journal, run_id, wait=args.wait)
            status = next(r.status for r in journal.runs() if r.run_id == run_id)
    except RunIdError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JournalError as exc:
        print(f"mcpp: cannot cancel: {exc}", file=sys.stderr)
        return 1
    print(
        f"run {run_id} stopped (supervisor pid {session.pid}): {status}; "
        f"'mcpp resume {run_id}' finishes it"
    )
    return 0


def ls_command(args: argparse.Namespace) -> int:
    """Run ``runs ls``: the same listing as ``status`` without a run id."""
    return status_command(argparse.Namespace(run_id=None, json=args.json))


def _removed(args: argparse.Namespace, removed: list[str], journal: Journal) -> None:
    import msgspec

    if getattr(args, "json", False):
        sys.stdout.buffer.write(msgspec.json.encode({"removed": removed}) + b"\n")
        return
    for run_id in removed:
        print(f"removed {run_id}")
    size = journal.path.stat().st_size if journal.path.exists() else 0
    print(f"{len(removed)} run(s) removed; the journal {journal.path.absolute()} is {size:,} bytes")


def _has_runs() -> bool:
    """Whether there is a journal or a run folder (looked for without creating anything)."""
    from mcpp.supervisor.journal import Journal
    from mcpp.supervisor.logs import known_runs

    journal = Journal.open_readonly()
    if journal is None:
        return bool(known_runs())
    journal.close()
    return True


def rm_command(args: argparse.Namespace) -> int:
    """Run ``runs rm``: every id is resolved before anything is removed."""
    from mcpp.supervisor.journal import Journal, JournalError

    try:
        if not _has_runs():
            print(f"mcpp: {no_runs_here()}", file=sys.stderr)
            return EXIT_USAGE
        with Journal.open() as journal:
            ids = [journal.resolve_any(text) for text in args.run_ids]
            removed = journal.delete(ids)
            _removed(args, removed, journal)
    except RunIdError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JournalError as exc:
        print(f"mcpp: cannot remove: {exc}", file=sys.stderr)
        return 1
    return 0


def prune_command(args: argparse.Namespace) -> int:
    """Run ``runs prune``: needs ``--older-than`` or ``--keep`` (or both: either removes)."""
    from mcpp.supervisor.journal import Journal, JournalError
    from mcpp.supervisor.manage import parse_age

    if args.older_than is None and args.keep is None:
        print("mcpp: runs prune: give --older-than AGE or --keep N", file=sys.stderr)
        return EXIT_USAGE
    if args.keep is not None and args.keep < 0:
        print("mcpp: runs prune: --keep must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    try:
        age = None if args.older_than is None else parse_age(args.older_than)
    except ValueError as exc:
        print(f"mcpp: runs prune --older-than: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if not _has_runs():
            print(no_runs_here())
            return 0
        with Journal.open() as journal:
            removed = journal.prune(older_than=age, keep=args.keep)
            _removed(args, removed, journal)
    except JournalError as exc:
        print(f"mcpp: cannot prune: {exc}", file=sys.stderr)
        return 1
    return 0
