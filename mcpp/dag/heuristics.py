"""What a scheduler orders steps by, computed from a :class:`~mcpp.dag.Graph`'s structure.

Each function takes the graph and returns a value per step; none changes the graph. Methods
taking step ids raise ``KeyError`` for an id that is not in the graph.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcpp.dag.graph import Graph

__all__ = ["critical_path", "effective_priority", "levels"]


def levels(graph: Graph) -> tuple[tuple[str, ...], ...]:
    """Steps grouped by depth: level k holds the steps whose longest path from a source
    (a step without dependencies) has k edges. Each level is in definition order."""
    level = [0] * len(graph)
    deps = graph.dependency_ids
    for i in graph.order:
        if deps[i]:
            level[i] = 1 + max([level[j] for j in deps[i]])
    groups: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
    for step, k in zip(graph.steps, level, strict=True):
        groups[k].append(step)
    return tuple(tuple(g) for g in groups)


def critical_path(graph: Graph, durations: Mapping[str, float] | None = None) -> dict[str, float]:
    """For every step, the length of the longest path from it to a sink, itself included.

    A path's length is the sum of its steps' estimated durations: ``durations[step]``,
    1.0 for a step not listed. A scheduler that starts the step with the longest critical
    path first shortens the run. Raises ``KeyError`` for an unknown step in ``durations``
    and ``ValueError`` for a negative or NaN duration.
    """
    weight = [1.0] * len(graph)
    for step, duration in (durations or {}).items():
        if not duration >= 0:
            raise ValueError(f"step {step!r}: duration must be >= 0, not {duration!r}")
        weight[graph.index(step)] = float(duration)
    length = [0.0] * len(graph)
    below = graph.dependent_ids
    for i in reversed(graph.order):
        down = below[i]
        length[i] = weight[i] + (max([length[j] for j in down]) if down else 0.0)
    return dict(zip(graph.steps, length, strict=True))


def effective_priority(graph: Graph, priorities: Mapping[str, int]) -> dict[str, int]:
    """Priority inheritance: for every step, the highest priority among itself and every
    step that depends on it, transitively (a step unlisted in ``priorities`` has 0).

    An urgent step thereby lifts the steps it waits for. Raises ``KeyError`` for an unknown
    step in ``priorities``.
    """
    own = [0] * len(graph)
    for step, priority in priorities.items():
        own[graph.index(step)] = priority
    below = graph.dependent_ids
    for i in reversed(graph.order):
        for j in below[i]:
            if own[j] > own[i]:
                own[i] = own[j]
    return dict(zip(graph.steps, own, strict=True))
