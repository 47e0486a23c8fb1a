"""The one vocabulary of step statuses, and how each status looks.

:class:`StepState` is used by the run state (:mod:`mcpp.dag`), run results and the journal
(:mod:`mcpp.supervisor.results`), the executor, graph exports and the progress view. It is a
``StrEnum``: its members are their lowercase names, so they compare equal to the strings of the
JSON documents and encode as those strings. :data:`LOOKS` is the one colour table.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["FINISHED", "LOOKS", "Look", "StepState"]


class StepState(enum.StrEnum):
    """Where one step is, or how it ended."""

    PENDING = "pending"  # waiting for its dependencies
    READY = "ready"  # every dependency succeeded; not yet passed out (run state only)
    RUNNING = "running"  # started; not yet reported back
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # failed by passing its timeout (results only: the graph says FAILED)
    SKIPPED = "skipped"  # an upstream step did not succeed, or the run stopped early
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """``True`` for the final states: succeeded, failed, timed out, skipped, cancelled."""
        return self in FINISHED


FINISHED = frozenset(
    {
        StepState.SUCCEEDED,
        StepState.FAILED,
        StepState.TIMED_OUT,
        StepState.SKIPPED,
        StepState.CANCELLED,
    }
)


class Look(NamedTuple):
    """How a status is shown: ``fill``, a colour for graphs; ``style``, a terminal style."""

    fill: str
    style: str


LOOKS: dict[StepState, Look] = {
    StepState.PENDING: Look("#ffffff", "dim"),
    StepState.READY: Look("#fff3b0", "yellow"),
    StepState.RUNNING: Look("#9ecbff", "cyan"),
    StepState.SUCCEEDED: Look("#a6e3a1", "green"),
    StepState.FAILED: Look("#f38ba8", "red"),
    StepState.TIMED_OUT: Look("#eba0ac", "red"),
    StepState.SKIPPED: Look("#d0d0d0", "yellow"),
    StepState.CANCELLED: Look("#fab387", "magenta"),
}
