"""The dependency graph of a workflow and the state of one run over it.

Modelled on :mod:`graphlib`, with the graph and a run kept apart:

* :class:`Graph` is built once from ``{step: dependencies}``, validated (unknown, self and
  duplicate dependencies, cycles) and immutable afterwards. It answers structural questions:
  topological order, levels, ancestors, critical path, inherited priority, exports.
* :class:`RunState` is the bookkeeping of one run, driven by its caller (the coordinator) with
  ``get_ready()`` / ``done()`` / ``fail()`` / ``is_active()``. It adds what graphlib lacks:
  failure and cancellation that skip the steps downstream, and per-step :class:`StepState`.

Neither does I/O or concurrency. Wherever an order is not fixed by the edges, definition order
(the order of the mapping given to :class:`Graph`) breaks the tie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from heapq import heappop, heappush
from types import MappingProxyType

from mcpp import dagexport
from mcpp.errors import CycleError, WorkflowError
from mcpp.status import StepState

__all__ = ["Graph", "RunState", "StepState"]


class Graph:
    """An immutable, validated DAG of step ids.

    ``Graph({"extract": [], "transform": ["extract"]})``: the keys are every step, in
    definition order; each value lists that step's dependencies (upstream step ids).

    Raises :class:`~mcpp.errors.WorkflowError` (``field="depends_on"``, naming the step) for a
    dependency that is unknown, the step itself, listed twice, or a string instead of a list;
    and :class:`~mcpp.errors.CycleError` when the dependencies form a cycle. The reported cycle
    is found deterministically and starts at its earliest-defined step; each step in it
    depends on the next: ``("a", "b", "a")`` means a depends on b and b on a.

    Methods taking a step id raise ``KeyError`` for an id that is not in the graph.
    """

    __slots__ = ("_dependencies", "_dependents", "_index", "_order", "_position", "_steps")

    def __init__(self, dependencies: Mapping[str, Iterable[str]]) -> None:
        steps = tuple(dependencies)
        index = {step: i for i, step in enumerate(steps)}
        lookup = index.get
        deps: list[tuple[int, ...]] = []
        dependents: list[list[int]] = [[] for _ in steps]
        forward = True  # every dependency defined before its dependent
        for i, (step, listed) in enumerate(dependencies.items()):
            if isinstance(listed, str):
                raise WorkflowError(
                    "must be a list of step ids, not a string", step=step, field="depends_on"
                )
            names = tuple(listed)
            ids = tuple([lookup(name, -1) for name in names])
            if -1 in ids or i in ids or len(set(ids)) != len(ids):
                raise _invalid_dependency(step, names, index)
            deps.append(ids)
            for j in ids:
                dependents[j].append(i)
            if forward and ids and max(ids) > i:
                forward = False

        order = range(len(steps)) if forward else _topological(steps, deps, dependents)
        position = [0] * len(steps)
        for p, i in enumerate(order):
            position[i] = p
        self._steps = steps
        self._index = index
        self._dependencies = tuple(deps)
        self._dependents = tuple(tuple(d) for d in dependents)
        self._order = tuple(order)
        self._position = tuple(position)

    @classmethod
    def from_pairs(cls, steps: Iterable[tuple[str, Iterable[str]]]) -> Graph:
        """Build a graph from ``(step, dependencies)`` pairs in definition order.

        Unlike a mapping, pairs can repeat an id: that raises
        :class:`~mcpp.errors.WorkflowError` (``field="id"``), besides every error of ``Graph()``.
        """
        table: dict[str, Iterable[str]] = {}
        for step, deps in steps:
            if step in table:
                raise WorkflowError("step id is defined more than once", step=step, field="id")
            table[step] = deps
        return cls(table)

    @property
    def steps(self) -> tuple[str, ...]:
        """Every step id, in definition order."""
        return self._steps

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, step: object) -> bool:
        return step in self._index

    def __repr__(self) -> str:
        edges = sum(len(d) for d in self._dependencies)
        return f"<Graph steps={len(self._steps)} edges={edges}>"

    def dependencies(self, step: str) -> tuple[str, ...]:
        """The direct dependencies of ``step``, in the order they were listed."""
        steps = self._steps
        return tuple([steps[j] for j in self._dependencies[self._lookup(step)]])

    def dependents(self, step: str) -> tuple[str, ...]:
        """The steps that directly depend on ``step``, in definition order."""
        steps = self._steps
        return tuple([steps[j] for j in self._dependents[self._lookup(step)]])

    def ancestors(self, step: str) -> frozenset[str]:
        """Every step that ``step`` depends on, directly or transitively (not itself)."""
        return self._reach(self._lookup(step), self._dependencies)

    def descendants(self, step: str) -> frozenset[str]:
        """Every step that depends on ``step``, directly or transitively (not itself)."""
        return self._reach(self._lookup(step), self._dependents)

    def topological_order(self) -> tuple[str, ...]:
        """Every step, each after all its dependencies.

        Kahn's algorithm with ties broken by definition order: of the steps whose dependencies
        are all placed, the earliest-defined comes next. A definition order that already
        respects the edges is returned unchanged.
        """
        steps = self._steps
        return tuple([steps[i] for i in self._order])

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Steps grouped by depth: level k holds the steps whose longest path from a source
        (a step without dependencies) has k edges. Each level is in definition order."""
        level = [0] * len(self._steps)
        deps = self._dependencies
        for i in self._order:
            if deps[i]:
                level[i] = 1 + max([level[j] for j in deps[i]])
        groups: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
        for step, k in zip(self._steps, level, strict=True):
            groups[k].append(step)
        return tuple(tuple(g) for g in groups)

    def critical_path(self, durations: Mapping[str, float] | None = None) -> dict[str, float]:
        """For every step, the length of the longest path from it to a sink, itself included.

        A path's length is the sum of its steps' estimated durations: ``durations[step]``,
        1.0 for a step not listed. A scheduler that starts the step with the longest critical
        path first shortens the run. Raises ``KeyError`` for an unknown step in ``durations``
        and ``ValueError`` for a negative or NaN duration.
        """
        weight = [1.0] * len(self._steps)
        for step, duration in (durations or {}).items():
            if not duration >= 0:
                raise ValueError(f"step {step!r}: duration must be >= 0, not {duration!r}")
            weight[self._lookup(step)] = float(duration)
        length = [0.0] * len(self._steps)
        below = self._dependents
        for i in reversed(self._order):
            down = below[i]
            length[i] = weight[i] + (max([length[j] for j in down]) if down else 0.0)
        return dict(zip(self._steps, length, strict=True))

    def effective_priority(self, priorities: Mapping[str, int]) -> dict[str, int]:
        """Priority inheritance: for every step, the highest priority among itself and every
        step that depends on it, transitively (a step unlisted in ``priorities`` has 0).

        An urgent step thereby lifts the steps it waits for. Raises ``KeyError`` for an unknown
        step in ``priorities``.
        """
        own = [0] * len(self._steps)
        for step, priority in priorities.items():
            own[self._lookup(step)] = priority
        below = self._dependents
        for i in reversed(self._order):
            for j in below[i]:
                if own[j] > own[i]:
                    own[i] = own[j]
        return dict(zip(self._steps, own, strict=True))

    def run_state(self, *, completed: Iterable[str] = ()) -> RunState:
        """A fresh :class:`RunState` over this graph; ``completed`` steps start as succeeded."""
        return RunState(self, completed=completed)

    def to_dot(
        self, states: Mapping[str, StepState] | None = None, *, name: str = "workflow"
    ) -> str:
        """The graph in Graphviz DOT, edges from dependency to dependent; ``states`` (a subset
        of the steps is fine) fills each node with its state's colour and names the state."""
        return dagexport.to_dot(self.steps, self.edges(), self._known_states(states), name)

    def to_mermaid(self, states: Mapping[str, StepState] | None = None) -> str:
        """The graph as a Mermaid flowchart. Nodes are ``s0, s1, ...`` in definition order,
        labelled with their ids; ``states`` assigns each node the class of its state."""
        return dagexport.to_mermaid(self.steps, self.edges(), self._known_states(states))

    def to_json(self, states: Mapping[str, StepState] | None = None) -> str:
        """The graph as JSON: ``{"nodes": [{"id", "state"}], "edges": [{"from", "to"}]}``.

        Nodes are in definition order, ``state`` is the state's value or ``null``; an edge goes
        from a dependency to its dependent.
        """
        return dagexport.to_json(self.steps, self.edges(), self._known_states(states))

    def edges(self) -> list[tuple[str, str]]:
        """Every edge as ``(dependency, dependent)``, dependents in definition order."""
        steps = self._steps
        return [(steps[j], steps[i]) for i, deps in enumerate(self._dependencies) for j in deps]

    def _lookup(self, step: str) -> int:
        try:
            return self._index[step]
        except KeyError:
            raise KeyError(f"unknown step {step!r}") from None

    def _reach(self, start: int, links: tuple[tuple[int, ...], ...]) -> frozenset[str]:
        seen: set[int] = set()
        stack = list(links[start])
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(links[i])
        steps = self._steps
        return frozenset([steps[i] for i in seen])

    def _known_states(self, states: Mapping[str, StepState] | None) -> dict[str, str]:
        for step in states or {}:
            self._lookup(step)
        return {step: state.value for step, state in (states or {}).items()}


def _invalid_dependency(
    step: str, names: tuple[str, ...], index: Mapping[str, int]
) -> WorkflowError:
    """The error for the first bad entry of ``step``'s dependency list, in list order."""
    seen: set[str] = set()
    for name in names:
        if name not in index:
            reason = f"unknown dependency {name!r}"
        elif name == step:
            reason = "a step cannot depend on itself"
        elif name in seen:
            reason = f"dependency {name!r} is listed more than once"
        else:
            seen.add(name)
            continue
        return WorkflowError(reason, step=step, field="depends_on")
    raise AssertionError(names)  # pragma: no cover


def _topological(
    steps: tuple[str, ...], deps: list[tuple[int, ...]], dependents: list[list[int]]
) -> list[int]:
    """Kahn's algorithm, popping the earliest-defined ready step first (so the smallest order
    by definition index); raises :class:`CycleError` with one cycle if there is one.

    The steps left unplaced each have a dependency also unplaced: following the first one from
    the earliest left step comes back on itself. The cycle is rotated to start at its
    earliest-defined step.
    """
    waiting = [len(d) for d in deps]
    heap = [i for i, count in enumerate(waiting) if count == 0]  # sorted, hence a heap
    order: list[int] = []
    while heap:
        i = heappop(heap)
        order.append(i)
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heappush(heap, j)
    if len(order) == len(deps):
        return order
    i = next(i for i, count in enumerate(waiting) if count)
    at: dict[int, int] = {}
    path: list[int] = []
    while i not in at:
        at[i] = len(path)
        path.append(i)
        i = next(j for j in deps[i] if waiting[j])
    cycle = path[at[i] :]
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    raise CycleError([steps[i] for i in [*cycle, cycle[0]]])


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

    __slots__ = ("_cause", "_counts", "_graph", "_ready", "_running", "_state", "_waiting")

    def __init__(self, graph: Graph, *, completed: Iterable[str] = ()) -> None:
        """Start a run with every step PENDING, except ``completed`` (succeeded in an earlier
        attempt; used by resume) and the steps that are then READY.

        Raises ``KeyError`` for an unknown completed step and ``ValueError`` for a completed
        step whose dependency is not also completed (the graph changed since).
        """
        pending, succeeded, ready = StepState.PENDING, StepState.SUCCEEDED, StepState.READY
        steps, deps = graph._steps, graph._dependencies
        state = [pending] * len(steps)
        done = {graph._lookup(step) for step in completed}
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
        steps = self._graph._steps
        return tuple([steps[i] for i in batch])

    def done(self, step: str) -> None:
        """Mark a RUNNING step SUCCEEDED; its dependents whose dependencies have now all
        succeeded become READY. Raises ``ValueError`` if ``step`` is not RUNNING."""
        i = self._stop(step, StepState.SUCCEEDED)
        state, waiting, pending = self._state, self._waiting, StepState.PENDING
        became = 0
        for j in self._graph._dependents[i]:
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
        cause = None if because is None else self._graph._lookup(because)
        state, skipped = self._state, StepState.SKIPPED
        pending, ready = StepState.PENDING, StepState.READY
        chosen = [i for i, s in enumerate(state) if s is pending or s is ready]
        for i in chosen:
            self._counts[state[i]] -= 1
            state[i] = skipped
            self._cause[i] = cause
        self._counts[skipped] += len(chosen)
        self._ready = []
        steps = self._graph._steps
        return tuple([steps[i] for i in chosen])

    def skipped_because(self, step: str) -> str | None:
        """For a SKIPPED step, the failed or cancelled step that caused the skip (or the
        ``because`` of :meth:`skip_remaining`); ``None`` otherwise."""
        cause = self._cause.get(self._graph._lookup(step))
        return None if cause is None else self._graph._steps[cause]

    def is_active(self) -> bool:
        """``True`` while a step is running or ready; ``False`` once the run can make no more
        progress, at which point every step is finished."""
        return bool(self._counts[StepState.READY] or self._counts[StepState.RUNNING])

    def state(self, step: str) -> StepState:
        """The current state of ``step``."""
        return self._state[self._graph._lookup(step)]

    def states(self) -> Mapping[str, StepState]:
        """A read-only snapshot of every step's state, in definition order."""
        return MappingProxyType(dict(zip(self._graph._steps, self._state, strict=True)))

    def running(self) -> tuple[str, ...]:
        """The RUNNING steps, in definition order."""
        steps = self._graph._steps
        return tuple([steps[i] for i in sorted(self._running)])

    def counts(self) -> dict[StepState, int]:
        """How many steps are in each state (every state present, zeros included)."""
        return dict(self._counts)

    def _stop(self, step: str, final: StepState) -> int:
        """Move RUNNING ``step`` to ``final`` and return its index, or raise ``ValueError``."""
        i = self._graph._index.get(step)
        if i is None:
            raise ValueError(f"unknown step {step!r}")
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
        state, below = self._state, self._graph._dependents
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
        chosen.sort(key=self._graph._position.__getitem__)
        steps = self._graph._steps
        return tuple([steps[i] for i in chosen])
