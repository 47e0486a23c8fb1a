"""Under the summary table: each failed step's traceback and the tail of its stderr."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from mcpp.status import StepState
from mcpp.supervisor.results import RunResult

__all__ = ["print_failures"]

FAILED = frozenset({StepState.FAILED, StepState.TIMED_OUT})


def print_failures(result: RunResult, console: Console) -> None:
    """Print, for every step that failed or timed out, its error, the traceback of its
    frames, the last lines it wrote to stderr and the command that shows all its output."""
    for step_id, record in result.steps.items():
        error = record.error
        if record.status not in FAILED or error is None:
            continue
        console.print()
        console.rule(
            Text(f"{step_id}: {record.status} (attempt {record.attempts})", style="bold red"),
            align="left",
        )
        if error.traceback:
            console.print(Text(error.traceback.rstrip("\n")))
        else:
            console.print(Text(f"{error.type}: {error.message}"))
        if error.stderr_tail:
            console.print(Text(f"stderr, last {len(error.stderr_tail)} lines:", style="bold"))
            console.print(Text("\n".join(f"  {line}" for line in error.stderr_tail)))
        console.print(Text(f"all its output: mcpp logs {result.run_id} {step_id}", style="dim"))
