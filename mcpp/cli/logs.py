"""``mcpp logs RUN_ID [STEP]``: a run's step output; and ``spawn --stream``'s live mirror.

Both read the logs that step processes write (:mod:`mcpp.supervisor.logs`); neither creates a
file. Every step's output is shown line by line with the step's id in front, as ``docker
compose`` does (``extract | text``, ``extract#2 | text`` for a later attempt); one step's
output alone is shown as it was written. A ``logging`` record reads ``LEVEL: message``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # msgspec loads where it is used: `mcpp --help` stays light
    from mcpp.supervisor.logs import LogLine

__all__ = ["Streamer", "add_logs", "format_line"]


def add_logs(commands: Any) -> None:
    """Add ``logs RUN_ID [STEP] [--attempt N] [--follow] [--tail N] [--json]``."""
    logs = commands.add_parser("logs", help="show what a run's steps printed")
    logs.set_defaults(func=logs_command)
    logs.add_argument("run_id", metavar="RUN_ID", help="a run id, a unique prefix of one, or last")
    logs.add_argument("step", nargs="?", help="one step (default: every step, interleaved)")
    logs.add_argument("--attempt", type=int, metavar="N", help="this attempt (default: the latest)")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until the run ends"
    )
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    logs.add_argument(
        "--json",
        action="store_true",
        help="one JSON array of lines (with --follow: one JSON object per line)",
    )


def format_line(line: LogLine, width: int | None) -> str:
    """``line`` as text: with ``width``, after its step's id padded to ``width``."""
    text = f"{line.level}: {line.text}" if line.stream == "log" else line.text
    if width is None:
        return text
    name = line.step if line.attempt == 1 else f"{line.step}#{line.attempt}"
    return f"{name:<{width}} | {text}"


def prefix_width(steps: Iterable[str]) -> int:
    """The width of the step column for ``steps`` (room for an attempt number)."""
    return max((len(step) for step in steps), default=0) + 2


def logs_command(args: argparse.Namespace) -> int:
    """Run ``logs``: 0 when shown; unknown runs and steps are MCPPErrors (exit 1)."""
    import msgspec

    from mcpp.supervisor.logs import find_run, follow_logs, read_logs, run_steps

    out = sys.stdout
    if args.follow:
        lines: Iterable[LogLine] = follow_logs(args.run_id, args.step, attempt=args.attempt)
    else:
        lines = read_logs(args.run_id, args.step, attempt=args.attempt, tail=args.tail)
        if args.json:
            out.buffer.write(msgspec.json.encode(lines) + b"\n")
            return 0
    width = None if args.step is not None else prefix_width(run_steps(args.run_id))
    shown = 0
    for line in lines:
        if args.json:
            out.buffer.write(msgspec.json.encode(line) + b"\n")
            out.buffer.flush()
        else:
            out.write(format_line(line, width) + "\n")
            out.flush()
        shown += 1
    if not shown and not args.json:
        what = f"step {args.step!r}" if args.step else "no step"
        attempt = f" (attempt {args.attempt})" if args.attempt is not None else ""
        verb = "wrote nothing" if args.step else "wrote anything"
        run_id, _folder = find_run(args.run_id)
        print(f"mcpp: {what}{attempt} of run {run_id} {verb}", file=sys.stderr)
    return 0


class Streamer:
    """``spawn --stream``: a thread that prints every step's new log lines, prefixed, while
    the run ``run_id`` runs. :meth:`close` prints what is left and stops it. :meth:`show`
    (also called before each progress line, so that a step's output comes before the line that
    says how it ended) may be called from any thread."""

    def __init__(self, run_id: str, steps: list[str], stream: TextIO) -> None:
        from mcpp.supervisor.logs import POLL, LogTail, logs_folder

        self.poll = POLL
        self.tail = LogTail(logs_folder(run_id), steps)
        self.width = prefix_width(steps)
        self.stream = stream
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name="mcpp-stream", daemon=True)

    def __enter__(self) -> Streamer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.show()  # the run is over: every file is complete

    def run(self) -> None:
        while not self.stop.wait(self.poll):
            self.show()

    def show(self) -> None:
        with self.lock:
            lines = self.tail.poll()
            if lines:
                self.stream.write("".join(format_line(line, self.width) + "\n" for line in lines))
                self.stream.flush()
