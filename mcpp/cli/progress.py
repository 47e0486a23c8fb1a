"""What a person sees during ``spawn`` and ``resume``: the live view and the summary table.

The live view and plain progress lines are :class:`mcpp.supervisor.progress.Progress` (the
Python API shows the same view); this module adds the table printed at the end.
"""

from __future__ import annotations

from typing import Any

from mcpp.supervisor.progress import STYLES, Progress
from mcpp.supervisor.results import RunResult

__all__ = ["Progress", "summary"]


def summary(result: RunResult, console: Any) -> None:
    """Print on ``console`` (a rich Console) a table of every step's status, attempts,
    duration and error."""
    from rich.table import Table
    from rich.text import Text

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
