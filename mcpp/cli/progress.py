"""What a person sees during ``spawn``: a live view on a terminal, plain lines otherwise.

The live view (rich) shows one line per running step, counts by status and the elapsed time.
When standard error is not a terminal, each step's end is one plain log line. ``NO_COLOR`` is
respected (rich reads it); ``quiet`` shows nothing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mcpp.protocol import StepCancelled, StepFailed, StepSkipped, StepSucceeded
from mcpp.status import LOOKS
from mcpp.supervisor.results import RunRecorder, RunResult

__all__ = ["Progress", "summary"]

STYLES = {str(state): look.style for state, look in LOOKS.items()}


class Progress:
    """Show a run's progress on ``stream`` (standard error by default); without ``live``,
    plain lines even on a terminal."""

    def __init__(
        self, *, quiet: bool = False, stream: TextIO | None = None, live: bool = True
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live_view = live
        self.console = Console(file=self.stream, stderr=stream is None)
        self.live: Live | None = None
        self.began = time.monotonic()
        self.recorder: RunRecorder | None = None

    def __enter__(self) -> Progress:
        if not self.quiet and self.live_view and self.console.is_terminal:
            self.live = Live(
                Text(""),
                console=self.console,
                refresh_per_second=8,
                transient=True,
                get_renderable=self.render,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def on_event(self, recorder: RunRecorder, event: Any) -> None:
        """Record the recorder and print a plain line for step ends (non-terminal only)."""
        self.recorder = recorder
        if self.quiet or self.live is not None:
            return
        line = None
        match event:
            case StepSucceeded():
                line = f"succeeded  {event.step}  ({event.duration_s:.2f} s)"
            case StepFailed():
                kind = (
                    "retrying"
                    if event.will_retry
                    else ("timed_out" if event.timed_out else "failed")
                )
                line = f"{kind:<10} {event.step}  {event.error.type}: {event.error.message}"
            case StepSkipped():
                why = f"because {event.because}" if event.because else "the run stopped"
                line = f"skipped    {event.step}  ({why})"
            case StepCancelled():
                line = f"cancelled  {event.step}  ({event.reason})"
        if line is not None:
            print(f"[mcpp] {line}", file=self.stream, flush=True)

    def render(self) -> Group:
        """The live view: counts, elapsed time, one row per running step."""
        elapsed = time.monotonic() - self.began
        if self.recorder is None:
            return Group(Text(f"starting… {elapsed:.1f} s"))
        counts = Counter(record.status for record in self.recorder.steps.values())
        head = Text(f"{self.recorder.spec.name}  {elapsed:.1f} s  ")
        for status, count in sorted(counts.items()):
            head.append(f"{status} {count}  ", style=STYLES.get(status, ""))
        table = Table.grid(padding=(0, 2))
        for step_id, record in self.recorder.steps.items():
            if record.status == "running":
                table.add_row(Text("▶", style="cyan"), step_id, f"attempt {record.attempts}")
        return Group(head, table)


def summary(result: RunResult, console: Console) -> None:
    """Print a table of every step's status, attempts, duration and error."""
    table = Table(
        title=f"{result.workflow}  run {result.run_id}  {result.status}  {result.duration_s:.2f} s"
    )
    for column in ("step", "status", "attempts", "seconds", "detail"):
        table.add_column(column)
    for step_id, record in result.steps.items():
        detail = ""
        if record.error is not None:
            detail = f"{record.error.type}: {record.error.message}"
        elif record.skipped_because:
            detail = f"because {record.skipped_because}"
        elif record.status == "succeeded":
            detail = repr(record.result)
            detail = detail if len(detail) <= 60 else detail[:57] + "..."
        if record.ended_processes:  # its author should learn that it left processes behind
            detail += f" (ended {record.ended_processes} left-over processes)"
        table.add_row(
            step_id,
            Text(record.status, style=STYLES.get(record.status, "")),
            str(record.attempts),
            f"{record.duration_s:.2f}",
            detail,
        )
    console.print(table)
