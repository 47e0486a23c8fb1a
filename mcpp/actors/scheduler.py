"""Which ready step gets the next free slot, and how long to wait before a retry.

Pure bookkeeping (no I/O, no trio): the coordinator pushes steps as they become ready and pops
the best one that can start now.

Order: higher *effective* priority first (a step inherits the highest priority of every step
that depends on it, transitively, so urgent work never waits behind a low-priority ancestor),
then the earlier ``deadline``, then the longer critical path, then definition order. Every
ready step is eventually popped, so nothing starves.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Mapping

from mcpp.dag import Graph
from mcpp.dag.heuristics import critical_path, effective_priority
from mcpp.workflow.spec import StepSpec, WorkflowSpec

__all__ = ["ReadyQueue", "Slots", "retry_delay", "should_retry"]


class Slots:
    """Concurrency limits: ``max_concurrent`` steps at once and named resource pools.

    A step that ``uses`` a resource takes one unit of it while it runs. ``slot=False`` is for
    steps whose concurrency something else bounds (a pool's workers): they take resources only.
    """

    __slots__ = ("free", "resources")

    def __init__(self, max_concurrent: int, resources: Mapping[str, int]) -> None:
        self.free = max_concurrent
        self.resources = dict(resources)

    def can_start(self, step: StepSpec, *, slot: bool = True) -> bool:
        """True if ``step`` fits in what is free now."""
        if slot and self.free <= 0:
            return False
        return all(self.resources.get(name, 0) > 0 for name in step.uses)

    def take(self, step: StepSpec, *, slot: bool = True) -> None:
        """Take a slot (unless ``slot`` is false) and one unit of every resource ``step`` uses."""
        if slot:
            self.free -= 1
        for name in step.uses:
            self.resources[name] -= 1

    def give_back(self, step: StepSpec, *, slot: bool = True) -> None:
        """Return what :meth:`take` took."""
        if slot:
            self.free += 1
        for name in step.uses:
            self.resources[name] += 1


class ReadyQueue:
    """Ready steps ordered by effective priority, deadline, critical path, definition order."""

    __slots__ = ("heap", "keys", "steps")

    def __init__(self, spec: WorkflowSpec, graph: Graph) -> None:
        self.steps = {step.id: step for step in spec.steps}
        priority = effective_priority(graph, {s.id: s.priority for s in spec.steps})
        critical = critical_path(graph)
        self.keys: dict[str, tuple[float, float, float, int]] = {
            step.id: (
                -priority[step.id],
                step.deadline if step.deadline is not None else math.inf,
                -critical[step.id],
                index,
            )
            for index, step in enumerate(spec.steps)
        }
        self.heap: list[tuple[tuple[float, float, float, int], str]] = []

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, step_id: str) -> None:
        """Add a ready step."""
        heapq.heappush(self.heap, (self.keys[step_id], step_id))

    def pop(self, can_start: Callable[[StepSpec], bool], *, scan: bool = True) -> StepSpec | None:
        """Remove and return the best step for which ``can_start`` is true, or None.

        With ``scan`` false only the best step is tried: pass it when no other step could start
        if the best one cannot (no resource pools, every step alike), to keep a pop O(log n).
        """
        if not self.heap:
            return None
        if can_start(self.steps[self.heap[0][1]]):
            return self.steps[heapq.heappop(self.heap)[1]]
        if not scan:
            return None
        held = []
        found = None
        while self.heap:
            item = heapq.heappop(self.heap)
            if can_start(self.steps[item[1]]):
                found = self.steps[item[1]]
                break
            held.append(item)
        for item in held:
            heapq.heappush(self.heap, item)
        return found

    def clear(self) -> list[str]:
        """Remove and return every queued step."""
        items = [step_id for _, step_id in sorted(self.heap)]
        self.heap.clear()
        return items


def retry_delay(step: StepSpec, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed ``attempt`` (1-based) before the next one.

    Exponential backoff ``retry_delay * retry_backoff ** (attempt - 1)``, capped at
    ``retry_max_delay``, with "equal jitter": a uniform draw in [delay/2, delay]. A growth too
    large for a float (many attempts) is the cap.
    """
    try:
        growth = step.retry_backoff ** (attempt - 1)
    except OverflowError:
        growth = math.inf
    grown = step.retry_delay * growth if step.retry_delay else 0.0
    base = min(step.retry_max_delay, grown)
    draw = (rng or random).random()
    return base / 2 + draw * base / 2


def should_retry(step: StepSpec, attempt: int, error_type: str) -> bool:
    """True if a failed ``attempt`` with ``error_type`` gets another try."""
    if attempt > step.retries:
        return False
    return not step.retry_on or error_type in step.retry_on
