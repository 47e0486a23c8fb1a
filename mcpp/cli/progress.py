"""What a person sees during ``spawn`` and ``resume``: the live view and the summary table.

The live view and plain progress lines are :class:`mcpp.supervisor.progress.Progress` (the
Python API shows the same view); this module adds the table printed at the end.
"""

from __future__ import annotations

import itertools
import reprlib
from typing import Any

from mcpp.supervisor.progress import STYLES, Progress
from mcpp.supervisor.results import RunResult

__all__ = ["Progress", "short_repr", "summary"]

DETAIL_CHARS = 60


class _Short(reprlib.Repr):
    """reprlib's bounded repr, where strings and bytes are cut before they are shown and a
    dict keeps its order: a result of a GiB is never turned into a string whole, and a small
    one reads as ``repr`` shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = DETAIL_CHARS
        self.maxlist = self.maxtuple = self.maxdict = DETAIL_CHARS

    def _cut(self, x: str | bytes | bytearray) -> str:
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    def repr_str(self, x: str, level: int) -> str:
        return self._cut(x)

    def repr_bytes(self, x: bytes, level: int) -> str:
        return self._cut(x)

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return self._cut(x)

    def repr_Ext(self, x: Any, level: int) -> str:  # reprlib calls repr_TYPENAME
        return f"Ext({x.code}, {self._cut(bytes(x.data))})"

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = itertools.islice(x.items(), self.maxdict)
        shown = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in items]
        return "{" + ", ".join(shown + ["..."] * (len(x) > self.maxdict)) + "}"


_short = _Short()


def short_repr(value: Any) -> str:
    """``repr(value)`` in at most :data:`DETAIL_CHARS` characters, made without building the
    whole repr of a large value."""
    text = _short.repr(value)
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


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
            detail = short_repr(record.result)
        if record.ended_processes:  # its author should learn that it left processes behind
            n = record.ended_processes
            detail += f" (ended {n} left-over process{'es' if n > 1 else ''})"
        table.add_row(
            step_id,
            Text(record.status, style=STYLES.get(record.status, "")),
            str(record.attempts),
            f"{record.duration_s:.2f}",
            detail,
        )
    console.print(table)
