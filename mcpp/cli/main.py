"""The command line: ``python -m mcpp.supervisor`` (also installed as ``mcpp``).

Exit codes: 0 every step succeeded; 1 a step failed, timed out or was skipped; 2 an invalid
workflow or usage; 130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

# Only light modules here: ``mcpp --help`` and ``mcpp --version`` import nothing else (each
# command imports what it needs when it runs).
from mcpp.cli.cache import add_cache
from mcpp.cli.graph import add_graph
from mcpp.cli.logs import add_logs
from mcpp.cli.manage import add_cancel, add_runs
from mcpp.cli.runs import add_resume, add_status
from mcpp.cli.templates import add_dir_option, add_templates, load_target
from mcpp.errors import ClusterError, MCPPError, WorkflowError
from mcpp.mcp.command import add_mcp
from mcpp.supervisor import signals as early

if TYPE_CHECKING:
    from mcpp.supervisor.results import RunResult
    from mcpp.workflow.spec import WorkflowSpec

__all__ = ["EXIT_CLOSED_PIPE", "EXIT_INTERRUPTED", "EXIT_USAGE", "main", "parser"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head -1`
RUNS_WORKFLOWS = frozenset({"spawn", "resume"})


def parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command.

    Each command is added by a function ``add_X(commands)`` that sets ``func``, the callable
    that runs it (``func(args) -> exit code``).
    """
    top = argparse.ArgumentParser(
        prog="mcpp", description="Run workflows of steps as actor processes."
    )
    top.add_argument("--version", action=VersionAction, help="print mcpp's version and exit")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return top


class VersionAction(argparse.Action):
    """``--version``: print ``mcpp X.Y.Z`` from the installed package's metadata and exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("mcpp")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from mcpp import __version__ as text
        print(f"mcpp {text}")
        parser.exit()


def add_spawn(commands: Any) -> None:
    """Add ``spawn FILE``."""
    spawn = commands.add_parser("spawn", help="run a workflow file")
    spawn.set_defaults(func=spawn_command)
    spawn.add_argument("file", help="workflow file (.toml, .json, .yaml) or template NAME[@V]")
    spawn.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="override a parameter"
    )
    spawn.add_argument("--max-concurrent", type=int, metavar="N", help="steps running at once")
    spawn.add_argument("--fail-fast", action="store_true", help="cancel everything on a failure")
    spawn.add_argument("--actors", choices=["per_step", "pool", "dask"], help="actor mode")
    spawn.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="Dask scheduler (tcp://HOST:PORT or tls://HOST:PORT) for --actors dask",
    )
    spawn.add_argument("--workers", type=int, metavar="N", help="pool size (pool mode)")
    spawn.add_argument("--json", action="store_true", help="print the result as one JSON document")
    spawn.add_argument("--quiet", action="store_true", help="no progress output")
    spawn.add_argument(
        "--stream",
        action="store_true",
        help="print the steps' output as it comes, each line after its step id (no live view)",
    )
    spawn.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the plan, start no step (imports the step modules to check "
        "their functions: their top-level code runs)",
    )
    spawn.add_argument(
        "--no-journal", action="store_true", help="do not record the run (no status, no resume)"
    )
    spawn.add_argument(
        "--events", metavar="FILE", help="write every run event to FILE as JSON lines"
    )
    add_dir_option(spawn)
    # For programs that start runs (the MCP server): the run id chosen in advance, and
    # parameters as one JSON object whose values keep their JSON types.
    spawn.add_argument("--run-id", type=run_id_arg, help=argparse.SUPPRESS)
    spawn.add_argument("--params-json", metavar="JSON", help=argparse.SUPPRESS)


RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def run_id_arg(text: str) -> str:
    """``--run-id``: 1-64 letters, digits, ``_`` or ``-`` (it names a folder under MCPP_HOME)."""
    if not 0 < len(text) <= 64 or not set(text) <= RUN_ID_CHARS:
        raise argparse.ArgumentTypeError("a run id is 1-64 letters, digits, '_' or '-'")
    return text


def spawn_params(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters of ``spawn``: ``--param`` texts, then ``--params-json`` values over them.

    Raises WorkflowError when ``--params-json`` is not one JSON object.
    """
    import msgspec

    from mcpp.workflow.params import parse_param_texts

    params: dict[str, Any] = dict(parse_param_texts(args.param))
    if args.params_json is not None:
        try:
            values = msgspec.json.decode(args.params_json)
        except msgspec.DecodeError as exc:
            raise WorkflowError(f"--params-json: {exc}", field="params") from None
        if not isinstance(values, dict):
            raise WorkflowError("--params-json must be a JSON object", field="params")
        params.update(values)
    return params


def apply_options(spec: WorkflowSpec, args: argparse.Namespace) -> WorkflowSpec:
    """Apply command-line overrides to ``spec``; raise WorkflowError for invalid values."""
    import msgspec

    from mcpp.workflow.spec import check_spec

    changes: dict[str, object] = {}
    if args.max_concurrent is not None:
        if args.max_concurrent < 1:
            raise WorkflowError("--max-concurrent must be at least 1", field="max_concurrent")
        changes["max_concurrent"] = args.max_concurrent
    if args.fail_fast:
        changes["on_failure"] = "fail_fast"
    if args.actors:
        changes["actors"] = args.actors
    if getattr(args, "scheduler", None) is not None:
        changes["scheduler"] = args.scheduler
    if args.workers is not None:
        if args.workers < 1:
            raise WorkflowError("--workers must be at least 1", field="workers")
        changes["workers"] = args.workers
    return check_spec(msgspec.structs.replace(spec, **changes)) if changes else spec


def spawn_command(args: argparse.Namespace) -> int:
    """Run ``spawn``; return the exit code.

    The run id goes to standard error before anything starts (with the ``resume`` command,
    for a journalled run), so a run killed with its output piped away still leaves it, and
    again when the run is interrupted.
    """
    from mcpp.cli.output import document_stdout

    try:
        # Loading imports the step modules: their import-time output must not reach --json.
        with document_stdout(True) if args.json else contextlib.nullcontext():
            spec = load_target(args.file, spawn_params(args), folder=args.dir)
        spec = apply_options(spec, args)
    except WorkflowError as exc:
        print(f"mcpp: invalid workflow: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        from mcpp.workflow.loader import dump_plan

        print(dump_plan(spec))
        return 0
    from mcpp.supervisor.logs import log_cap
    from mcpp.supervisor.manage import keep_runs_setting

    try:
        log_cap()  # settings checked before anything is journalled or started
        if not args.no_journal:
            keep_runs_setting()
    except MCPPError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_workflow(spec, args)


def run_workflow(spec: WorkflowSpec, args: argparse.Namespace) -> int:
    """Run ``spec`` as ``spawn`` options say: progress, ``--events``, the journal, ``--json``."""
    import trio

    from mcpp.cli.events import open_event_hook, run_started_document
    from mcpp.cli.failures import print_failures
    from mcpp.cli.logs import Streamer
    from mcpp.cli.output import document_stdout, stdout_console
    from mcpp.cli.progress import Progress, summary
    from mcpp.supervisor.resume import run_journalled
    from mcpp.supervisor.run import new_run_id, run_spec

    run_id = getattr(args, "run_id", None) or new_run_id()
    journalled = not args.no_journal
    if not args.quiet:
        say(f"mcpp: run {run_id} of {spec.name!r}" + (resume_hint(run_id) if journalled else ""))
    started = run_started_document(run_id, spec.name)
    steps = [step.id for step in spec.steps]
    streamer = Streamer(run_id, steps, sys.stderr if args.json else sys.stdout)
    with document_stdout(args.json) as out:
        with (
            Progress(quiet=args.quiet or args.json, live=not args.stream) as progress,
            open_event_hook(
                args.events,
                streamed(streamer, progress.on_event) if args.stream else progress.on_event,
                started=started,
            ) as on_event,
            streamer if args.stream else contextlib.nullcontext(),
        ):
            run = run_journalled if journalled else run_spec
            result = trio.run(partial(run, spec, run_id=run_id, on_event=on_event))
        report_interruption(result, journalled)
        if args.json:
            out.write(result.to_json() + b"\n")
            out.flush()
    if not args.json:
        console = stdout_console()
        summary(result, console)
        print_failures(result, console)
    return result.exit_code


def streamed(streamer: Any, then: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """``then``, after printing the step output the streamer has not shown yet (``--stream``:
    a step's output comes before the progress line that says how it ended)."""

    def hook(recorder: Any, event: Any) -> None:
        streamer.show()
        then(recorder, event)

    return hook


def resume_hint(run_id: str) -> str:
    """``; resume with: mcpp resume RUN_ID`` (for a journalled run)."""
    return f"; resume with: mcpp resume {run_id}"


def report_interruption(result: RunResult, journalled: bool) -> None:
    """After Ctrl-C or SIGTERM: the run id (and the resume command) on standard error."""
    if result.exit_code == EXIT_INTERRUPTED:
        hint = resume_hint(result.run_id) if journalled else ""
        say(f"mcpp: run {result.run_id} interrupted{hint}")


def say(text: str) -> None:
    """Print one line on standard error; a closed standard error is not an error."""
    with contextlib.suppress(BrokenPipeError, ValueError):
        print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Text that cannot be encoded for the terminal (a file name of bytes that are not UTF-8) is
    printed with backslash escapes rather than failing. Standard output closed by its reader
    (``mcpp status | head -1``) ends the command quietly with :data:`EXIT_CLOSED_PIPE`, as a
    Unix tool ends: no traceback (a run that was going still finishes and records its end
    first, since its output comes last).
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        return command(argv)
    except BrokenPipeError:
        # Python would flush stdout again at exit and print the error: point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, stream.fileno())
        os.close(devnull)
        return EXIT_CLOSED_PIPE


def command(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command; return the exit code (see :func:`main`)."""
    args = parser().parse_args(argv)
    if early.pending:  # interrupted before anything ran
        return EXIT_INTERRUPTED
    if args.command in RUNS_WORKFLOWS:
        # The supervisor is a subreaper: what the run's actors leave behind when they die
        # re-parents to it, and it ends those processes (mcpp.actors.contain).
        from mcpp.actors import contain

        contain.become_subreaper()
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler of main
    except WorkflowError as exc:
        print(f"mcpp: invalid workflow: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as exc:  # before any step started: like a usage error
        print(f"mcpp: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MCPPError as exc:
        print(f"mcpp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a reason may quote text with line breaks)."""
    return " ".join(str(exc).split())


COMMANDS: list[Callable[[Any], None]] = [
    add_spawn,
    add_status,
    add_resume,
    add_cancel,
    add_runs,
    add_cache,
    add_graph,
    add_templates,
    add_mcp,
    add_logs,
]
