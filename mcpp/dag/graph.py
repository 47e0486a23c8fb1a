"""The graph: an immutable, validated DAG of step ids (see :mod:`mcpp.dag`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from heapq import heappop, heappush

from mcpp.dag.run import RunState
from mcpp.errors import CycleError, WorkflowError

__all__ = ["Graph"]


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
        return tuple([steps[j] for j in self._dependencies[self.index(step)]])

    def dependents(self, step: str) -> tuple[str, ...]:
        """The steps that directly depend on ``step``, in definition order."""
        steps = self._steps
        return tuple([steps[j] for j in self._dependents[self.index(step)]])

    def ancestors(self, step: str) -> frozenset[str]:
        """Every step that ``step`` depends on, directly or transitively (not itself)."""
        return self._reach(self.index(step), self._dependencies)

    def descendants(self, step: str) -> frozenset[str]:
        """Every step that depends on ``step``, directly or transitively (not itself)."""
        return self._reach(self.index(step), self._dependents)

    def topological_order(self) -> tuple[str, ...]:
        """Every step, each after all its dependencies.

        Kahn's algorithm with ties broken by definition order: of the steps whose dependencies
        are all placed, the earliest-defined comes next. A definition order that already
        respects the edges is returned unchanged.
        """
        steps = self._steps
        return tuple([steps[i] for i in self._order])

    def run_state(self, *, completed: Iterable[str] = ()) -> RunState:
        """A fresh :class:`RunState` over this graph; ``completed`` steps start as succeeded."""
        return RunState(self, completed=completed)

    def edges(self) -> list[tuple[str, str]]:
        """Every edge as ``(dependency, dependent)``, dependents in definition order."""
        steps = self._steps
        return [(steps[j], steps[i]) for i, deps in enumerate(self._dependencies) for j in deps]

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

    # --- the graph by definition index, for code that works on indices ---------------------
    # (RunState and the heuristics; each step is its position in ``steps``)

    def index(self, step: str) -> int:
        """The definition index of ``step``; raises ``KeyError`` for an unknown step."""
        try:
            return self._index[step]
        except KeyError:
            raise KeyError(f"unknown step {step!r}") from None

    @property
    def dependency_ids(self) -> tuple[tuple[int, ...], ...]:
        """For each step by index, the indices of its dependencies, in listed order."""
        return self._dependencies

    @property
    def dependent_ids(self) -> tuple[tuple[int, ...], ...]:
        """For each step by index, the indices of its dependents, in definition order."""
        return self._dependents

    @property
    def order(self) -> tuple[int, ...]:
        """The indices in :meth:`topological_order`."""
        return self._order

    @property
    def rank(self) -> tuple[int, ...]:
        """For each step by index, its place in :meth:`topological_order`."""
        return self._position


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
