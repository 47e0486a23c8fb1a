"""What an attempt of a step is given: its arguments and its upstream steps' results.

:class:`Inputs` keeps each result only while a step that needs it has not finished, so a long
run holds the results of its frontier, not of every step, and builds the ``StartStep`` of each
attempt from them. Results stay MessagePack (``msgspec.Raw``): the coordinator never decodes
them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mcpp import protocol
from mcpp.dag import Graph
from mcpp.protocol import RunWorkflow, StartStep
from mcpp.workflow.spec import StepSpec

__all__ = ["Inputs"]


class Inputs:
    """The results a run keeps for the steps that still need them."""

    def __init__(self, run: RunWorkflow, graph: Graph) -> None:
        self._run = run
        self._graph = graph
        self._results: dict[str, msgspec.Raw] = dict(run.completed)
        self._uses_left = {s: len(graph.dependents(s)) for s in graph.steps}

    def upstream(self, step: StepSpec) -> dict[str, msgspec.Raw]:
        """The result of each step ``step`` depends on."""
        return {u: self._results[u] for u in step.depends_on}

    def record(self, step_id: str, result: msgspec.Raw) -> None:
        """``step_id`` succeeded with ``result``: keep it if a step needs it."""
        if self._uses_left[step_id]:
            self._results[step_id] = result

    def consumed(self, step_id: str) -> None:
        """``step_id`` is finished: drop upstream results that no step needs any more."""
        for upstream in self._graph.dependencies(step_id):
            self._uses_left[upstream] -= 1
            if not self._uses_left[upstream]:
                self._results.pop(upstream, None)

    def start(self, step: StepSpec, attempt: int, after: str | None = None) -> StartStep:
        """The StartStep for ``attempt``: arguments plus every upstream result, but for
        ``after``, whose result the worker passes on itself (a chain follower)."""
        spec = self._run.spec
        kwargs: dict[str, Any] = dict(step.args)
        for upstream in step.depends_on:
            if upstream != after:
                kwargs[step.inputs.get(upstream, upstream)] = self._results[upstream]
        return StartStep(
            version=protocol.PROTOCOL_VERSION,
            run_id=self._run.run_id,
            step=step.id,
            attempt=attempt,
            target=step.run,
            kwargs=protocol.encode_value(kwargs, step=step.id),
            import_paths=spec.import_paths,
            main_path=spec.main_path,
            after=after,
            after_name=None if after is None else step.inputs.get(after),
            timeout=step.timeout,
            log_dir=self._run.log_dir,
            log_cap=self._run.log_cap,
            spill_dir=self._run.spill_dir,
        )
