"""What a person sees while a run goes: a live view on a terminal, plain lines otherwise.

:class:`ProgressModel` folds a run's events (:mod:`mcpp.protocol`) into what is shown: every
step's status, with a step that failed and waits for its next attempt counted as ``retrying``
(with the delay the coordinator drew), apart from ``running``. :class:`Progress` renders it:
on a terminal a live view (rich) with counts, the elapsed time and one row per running or
retrying step; otherwise, if asked, one plain line per step end. ``NO_COLOR`` is respected
(rich reads it). The CLI (``spawn``, ``resume``) and :meth:`mcpp.Workflow.run` share it.

Output to a closed pipe (``mcpp spawn ... 2>&1 | head -1``) is dropped, never raised: the run
must not fail because nobody reads its progress.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from mcpp.protocol import StepCancelled, StepFailed, StepSkipped, StepStarted, StepSucceeded
from mcpp.status import LOOKS, StepState
from mcpp.supervisor.results import RunRecorder

__all__ = ["RETRYING", "STYLES", "Progress", "ProgressModel", "Retry", "plain_line"]

RETRYING = "retrying"
"""The shown status of a step waiting for its next attempt (the run's records say ``running``)."""

STYLES = {str(state): look.style for state, look in LOOKS.items()} | {RETRYING: "yellow"}


class Retry(NamedTuple):
    """A step waiting for its next attempt: the attempt that failed, its error type, the delay
    drawn (``None`` if the coordinator sent none) and when (model clock) the wait ends."""

    attempt: int
    error_type: str
    delay_s: float | None
    until: float


class ProgressModel:
    """The shown state of a run, folded from its events.

    ``statuses`` maps every step to a :class:`~mcpp.status.StepState` value or
    :data:`RETRYING`; ``attempts`` the latest attempt started; ``retries`` the steps waiting to
    retry. ``clock`` is a monotonic clock in seconds (a parameter so tests can fix it).
    """

    def __init__(
        self, statuses: dict[str, str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.statuses = dict(statuses)
        self.attempts: dict[str, int] = {}
        self.retries: dict[str, Retry] = {}
        self.clock = clock

    @classmethod
    def from_recorder(cls, recorder: RunRecorder) -> ProgressModel:
        """A model starting from the recorder's records (steps a resume reuses: succeeded)."""
        return cls({step_id: str(r.status) for step_id, r in recorder.steps.items()})

    def apply(self, event: Any) -> None:
        """Apply one coordinator event (other messages are ignored)."""
        match event:
            case StepStarted():
                self.statuses[event.step] = StepState.RUNNING
                self.attempts[event.step] = event.attempt
                self.retries.pop(event.step, None)
            case StepSucceeded():
                self.statuses[event.step] = StepState.SUCCEEDED
            case StepFailed() if event.will_retry:
                self.statuses[event.step] = RETRYING
                delay = event.retry_in_s
                until = self.clock() + (delay or 0.0)
                self.retries[event.step] = Retry(event.attempt, event.error.type, delay, until)
            case StepFailed():
                self.statuses[event.step] = (
                    StepState.TIMED_OUT if event.timed_out else StepState.FAILED
                )
            case StepSkipped():
                self.statuses[event.step] = StepState.SKIPPED
            case StepCancelled():
                self.statuses[event.step] = StepState.CANCELLED
                self.retries.pop(event.step, None)

    def counts(self) -> dict[str, int]:
        """How many steps are in each shown status (``retrying`` apart from ``running``)."""
        return dict(sorted(Counter(map(str, self.statuses.values())).items()))

    def rows(self) -> list[tuple[str, str, str]]:
        """``(mark, step, detail)`` for each running step, then each retrying one with the time
        left before its next attempt (``retrying in 1.5 s``)."""
        rows = []
        for step_id, status in self.statuses.items():
            if status == StepState.RUNNING:
                rows.append(("▶", step_id, f"attempt {self.attempts.get(step_id, 1)}"))
            elif status == RETRYING:
                rows.append(("↻", step_id, self.retry_text(step_id)))
        return rows

    def retry_text(self, step_id: str) -> str:
        """``attempt 1 failed (ValueError); retrying in 1.5 s`` for a retrying step."""
        retry = self.retries[step_id]
        text = f"attempt {retry.attempt} failed ({retry.error_type}); retrying"
        if retry.delay_s is None:
            return text
        return f"{text} in {max(0.0, retry.until - self.clock()):.1f} s"


class Progress:
    """Show a run's progress on ``stream`` (standard error by default).

    On a terminal: the live view, unless ``quiet`` or not ``live`` (``spawn --stream``).
    Elsewhere, or without ``live``: with ``lines`` (the CLI), one plain ``[mcpp] ...`` line per
    step end or retry; without (the Python API), nothing.
    :meth:`on_event` is an ``on_event`` hook of :func:`~mcpp.supervisor.run.run_spec`.
    """

    def __init__(
        self,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        lines: bool = True,
        live: bool = True,
    ) -> None:
        from rich.console import Console

        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.lines = lines
        self.live_view = live
        self.console = Console(file=self.stream, stderr=stream is None)
        self.live: Any = None
        self.began = time.monotonic()
        self.recorder: RunRecorder | None = None
        self.model: ProgressModel | None = None

    def __enter__(self) -> Progress:
        if not self.quiet and self.live_view and self.console.is_terminal:
            from rich.live import Live
            from rich.text import Text

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
        """Fold ``event`` into the model; print its plain line (no live view, ``lines`` on)."""
        self.recorder = recorder
        if self.model is None:
            self.model = ProgressModel.from_recorder(recorder)
        self.model.apply(event)
        if self.quiet or self.live is not None or not self.lines:
            return
        line = plain_line(event)
        if line is not None:
            self.say(f"[mcpp] {line}")

    def say(self, text: str) -> None:
        """Print one line; on a closed pipe stop printing (the run goes on)."""
        try:
            print(text, file=self.stream, flush=True)
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self.quiet = True

    def render(self) -> Any:
        """The live view: counts, elapsed time, one row per running or retrying step."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = time.monotonic() - self.began
        if self.recorder is None or self.model is None:
            return Group(Text(f"starting… {elapsed:.1f} s"))
        head = Text(f"{self.recorder.spec.name}  {elapsed:.1f} s  ")
        for status, count in self.model.counts().items():
            head.append(f"{status} {count}  ", style=STYLES.get(status, ""))
        table = Table.grid(padding=(0, 2))
        for mark, step_id, detail in self.model.rows():
            style = "cyan" if mark == "▶" else STYLES[RETRYING]
            table.add_row(Text(mark, style=style), step_id, detail)
        return Group(head, table)


def plain_line(event: Any) -> str | None:
    """The plain progress line of a step end or retry (``None`` for other events)."""
    match event:
        case StepSucceeded():
            return f"succeeded  {event.step}  ({event.duration_s:.2f} s)"
        case StepFailed() if event.will_retry:
            when = f" in {event.retry_in_s:.1f} s" if event.retry_in_s is not None else ""
            return (
                f"retrying   {event.step}  {event.error.type}: {event.error.message} "
                f"(attempt {event.attempt}; retrying{when})"
            )
        case StepFailed():
            kind = "timed_out" if event.timed_out else "failed"
            return f"{kind:<10} {event.step}  {event.error.type}: {event.error.message}"
        case StepSkipped():
            why = f"because {event.because}" if event.because else "the run stopped"
            return f"skipped    {event.step}  ({why})"
        case StepCancelled():
            return f"cancelled  {event.step}  ({event.reason})"
    return None
