"""The state of one run over a :class:`~mcpp.dag.Graph` (see :mod:`mcpp.dag`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from mcpp.status import StepState

if TYPE_CHECKING:
    from mcpp.dag.graph import Graph

__all__ = ["RunState"]


class RunState:
    """The state of one run over a :class:`Graph`, driven by the caller like graphlib's
    ``TopologicalSorter``::

        run = graph.run_state()
        while run.is_active():
            for step in run.get_ready():
                start(step)
            step, ok = wait_for_any()
            run.done(step) if ok else run.fail(step)

    Every step goes PENDING -> READY -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, or to
    SKIPPED from PENDING or READY. ``done``, ``fail`` and ``cancel`` take a RUNNING step and
    raise ``ValueError`` otherwise; they cost time in proportion to the steps they touch, never
    the whole graph. Lookups of an unknown step raise ``KeyError``.
    """

    __slots__ = (
        "_below",
        "_cause",
        "_counts",
        "_graph",
        "_ready",
        "_running",
        "_state",
        "_steps",
        "_waiting",
    )

    def __init__(self, graph: Graph, *, completed: Iterable[str] = ()) -> None:
        """Start a run with every step PENDING, except ``completed`` (succeeded in an earlier
        attempt; used by resume) and the steps that are then READY.

        Raises ``KeyError`` for an unknown completed step and ``ValueError`` for a completed
        step whose dependency is not also completed (the graph changed since).
        """
        pending, succeeded, ready = StepState.PENDING, StepState.SUCCEEDED, StepState.READY
        steps, deps = graph.steps, graph.dependency_ids
        state = [pending] * len(steps)
        done = {graph.index(step) for step in completed}
        for i in done:
            state[i] = succeeded
        for i in sorted(done):
            for j in deps[i]:
                if state[j] is not succeeded:
                    raise ValueError(
                        f"step {steps[i]!r} is completed but its dependency {steps[j]!r} is not"
                    )
        if done:
            waiting = [sum(state[j] is not succeeded for j in d) for d in deps]
        else:
            waiting = [len(d) for d in deps]
        self._ready = [i for i, count in enumerate(waiting) if count == 0 and i not in done]
        for i in self._ready:
            state[i] = ready
        self._graph = graph
        self._steps = steps
        self._below = graph.dependent_ids
        self._state = state
        self._waiting = waiting
        self._running: dict[int, None] = {}  # an ordered set
        self._cause: dict[int, int | None] = {}
        self._counts = dict.fromkeys(StepState, 0)
        self._counts[pending] = len(steps) - len(done) - len(self._ready)
        self._counts[succeeded] = len(done)
        self._counts[ready] = len(self._ready)

    @property
    def graph(self) -> Graph:
        """The graph this run is over."""
        return self._graph

    def __repr__(self) -> str:
        counts = ", ".join(f"{s.value}={n}" for s, n in self._counts.items() if n)
        return f"<RunState {counts}>"

    def get_ready(self) -> tuple[str, ...]:
        """The steps that became READY since the last call, in definition order, now RUNNING.

        Each step is passed out once; an empty tuple means nothing new is ready.
        """
        state, ready, running = self._state, StepState.READY, StepState.RUNNING
        batch = sorted([i for i in self._ready if state[i] is ready])
        self._ready = []
        for i in batch:
            state[i] = running
            self._running[i] = None
        self._counts[ready] -= len(batch)
        self._counts[running] += len(batch)
        steps = self._steps
        return tuple([steps[i] for i in batch])

    def done(self, step: str) -> None:
        """Mark a RUNNING step SUCCEEDED; its dependents whose dependencies have now all
        succeeded become READY. Raises ``ValueError`` if ``step`` is not RUNNING."""
        i = self._stop(step, StepState.SUCCEEDED)
        state, waiting, pending = self._state, self._waiting, StepState.PENDING
        became = 0
        for j in self._below[i]:
            waiting[j] -= 1
            if waiting[j] == 0 and state[j] is pending:
                state[j] = StepState.READY
                self._ready.append(j)
                became += 1
        self._counts[pending] -= became
        self._counts[StepState.READY] += became

    def fail(self, step: str) -> tuple[str, ...]:
        """Mark a RUNNING step FAILED and skip every transitive dependent not yet finished.

        Returns the newly skipped steps in topological order. Raises ``ValueError`` if
        ``step`` is not RUNNING.
        """
        i = self._stop(step, StepState.FAILED)
        return self._skip_below(i)

    def cancel(self, step: str) -> tuple[str, ...]:
        """Mark a RUNNING step CANCELLED and skip its dependents as :meth:`fail` does."""
        i = self._stop(step, StepState.CANCELLED)
        return self._skip_below(i)

    def skip_remaining(self, *, because: str | None = None) -> tuple[str, ...]:
        """Skip every step not yet passed out (PENDING or READY), as fail_fast does.

        Running steps are left to the caller (to cancel or let finish). ``because`` names the
        step whose failure stopped the run, reported by :meth:`skipped_because`. Returns the
        skipped steps in definition order.
        """
        cause = None if because is None else self._graph.index(because)
        state, skipped = self._state, StepState.SKIPPED
        pending, ready = StepState.PENDING, StepState.READY
        chosen = [i for i, s in enumerate(state) if s is pending or s is ready]
        for i in chosen:
            self._counts[state[i]] -= 1
            state[i] = skipped
            self._cause[i] = cause
        self._counts[skipped] += len(chosen)
        self._ready = []
        steps = self._steps
        return tuple([steps[i] for i in chosen])

    def skipped_because(self, step: str) -> str | None:
        """For a SKIPPED step, the failed or cancelled step that caused the skip (or the
        ``because`` of :meth:`skip_remaining`); ``None`` otherwise."""
        cause = self._cause.get(self._graph.index(step))
        return None if cause is None else self._steps[cause]

    def is_active(self) -> bool:
        """``True`` while a step is running or ready; ``False`` once the run can make no more
        progress, at which point every step is finished."""
        return bool(self._counts[StepState.READY] or self._counts[StepState.RUNNING])

    def state(self, step: str) -> StepState:
        """The current state of ``step``."""
        return self._state[self._graph.index(step)]

    def states(self) -> Mapping[str, StepState]:
        """A read-only snapshot of every step's state, in definition order."""
        return MappingProxyType(dict(zip(self._steps, self._state, strict=True)))

    def running(self) -> tuple[str, ...]:
        """The RUNNING steps, in definition order."""
        steps = self._steps
        return tuple([steps[i] for i in sorted(self._running)])

    def counts(self) -> dict[StepState, int]:
        """How many steps are in each state (every state present, zeros included)."""
        return dict(self._counts)

    def _stop(self, step: str, final: StepState) -> int:
        """Move RUNNING ``step`` to ``final`` and return its index, or raise ``ValueError``."""
        try:
            i = self._graph.index(step)
        except KeyError:
            raise ValueError(f"unknown step {step!r}") from None
        current = self._state[i]
        if current is not StepState.RUNNING:
            if current.finished:
                raise ValueError(f"step {step!r} is already {current.value}, not running")
            raise ValueError(f"step {step!r} was not passed out by get_ready()")
        del self._running[i]
        self._state[i] = final
        self._counts[StepState.RUNNING] -= 1
        self._counts[final] += 1
        return i

    def _skip_below(self, cause: int) -> tuple[str, ...]:
        """Skip the unfinished transitive dependents of ``cause``; finished ones stop the walk
        (a skipped step's dependents were skipped with it), so each step is walked once."""
        state, below = self._state, self._below
        pending, ready, skipped = StepState.PENDING, StepState.READY, StepState.SKIPPED
        chosen: list[int] = []
        stack = list(below[cause])
        while stack:
            i = stack.pop()
            current = state[i]
            if current is pending or current is ready:
                self._counts[current] -= 1
                state[i] = skipped
                self._cause[i] = cause
                chosen.append(i)
                stack.extend(below[i])
        self._counts[skipped] += len(chosen)
        chosen.sort(key=self._graph.rank.__getitem__)
        steps = self._steps
        return tuple([steps[i] for i in chosen])
