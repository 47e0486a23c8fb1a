"""Pool-mode chains: steps sent to a worker right behind their upstream, before it succeeded.

A follower is the only dependent of the step before it and depends on nothing else; the worker
passes it that step's result itself, sparing a round trip through the coordinator per link (a
chain's hop). :class:`Chains` picks the followers of a step and keeps the links until each
follower's upstream succeeds (it then runs on its worker), fails (it is dropped from its
worker), or its worker dies (it runs again on its own, never as a follower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from mcpp.actors.pool import Worker
from mcpp.dag import Graph
from mcpp.protocol import StartStep
from mcpp.workflow.spec import StepSpec

__all__ = ["MAX_FOLLOWERS", "Chains"]

MAX_FOLLOWERS = 16


class Chains:
    """The followers of a run's pooled steps, and the links of those sent to a worker."""

    def __init__(self, graph: Graph, steps: Mapping[str, StepSpec]) -> None:
        self._graph = graph
        self._steps = steps
        self._upstream: dict[str, tuple[str, Worker]] = {}  # follower -> (upstream, worker)
        self._follower: dict[str, str] = {}  # upstream -> follower
        self._unchained: set[str] = set()

    def __contains__(self, step_id: object) -> bool:
        """True while ``step_id`` waits on a worker for its upstream."""
        return step_id in self._upstream

    def followers(
        self,
        step: StepSpec,
        *,
        waiting: Callable[[str], bool],
        start: Callable[[StepSpec, str], StartStep],
    ) -> list[StartStep]:
        """The chain of steps that can run on the same worker right after ``step``.

        Each is the only dependent of the one before and depends on nothing else, is
        ``waiting`` (not started, not ready), and needs nothing the worker cannot give it (no
        resource, cache or own process). ``start(follower, upstream)`` makes its StartStep;
        every link but the last asks the worker to keep its result for the next.
        """
        chain: list[StartStep] = []
        current = step
        while len(chain) < MAX_FOLLOWERS:
            dependents = self._graph.dependents(current.id)
            if len(dependents) != 1:
                break
            nxt = self._steps[dependents[0]]
            if (
                nxt.depends_on != (current.id,)
                or nxt.isolate
                or nxt.uses
                or nxt.cache is not False
                or nxt.id in self._unchained
                or not waiting(nxt.id)
            ):
                break
            if chain:
                chain[-1] = msgspec.structs.replace(chain[-1], keep=True)
            chain.append(start(nxt, current.id))
            current = nxt
        return chain

    def link(self, followers: Sequence[StartStep], worker: Worker) -> None:
        """``followers`` went to ``worker`` behind their upstreams."""
        for follower in followers:
            assert follower.after is not None
            self._upstream[follower.step] = (follower.after, worker)
            self._follower[follower.after] = follower.step

    def unlink(self, step_id: str) -> None:
        """``step_id`` waits no more: its upstream succeeded, or its worker gave it back."""
        upstream, _worker = self._upstream.pop(step_id)
        self._follower.pop(upstream, None)

    def forget(self, step_id: str) -> list[str]:
        """``step_id`` did not succeed: drop its followers from their worker; return them."""
        dropped = []
        follower = self._follower.pop(step_id, None)
        while follower is not None:
            _upstream, worker = self._upstream.pop(follower)
            worker.finished(follower)
            dropped.append(follower)
            follower = self._follower.pop(follower, None)
        return dropped

    def unchain(self, step_id: str) -> None:
        """Never send ``step_id`` as a follower again (its worker died under it)."""
        self._unchained.add(step_id)
