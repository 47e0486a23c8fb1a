"""The dependency graph of a workflow and the state of one run over it.

Modelled on :mod:`graphlib`, with the graph and a run kept apart:

* :class:`Graph` (:mod:`mcpp.dag.graph`) is built once from ``{step: dependencies}``,
  validated (unknown, self and duplicate dependencies, cycles) and immutable afterwards. It
  answers structural questions: topological order, dependencies, ancestors, edges.
* :class:`RunState` (:mod:`mcpp.dag.run`) is the bookkeeping of one run, driven by its caller
  (the coordinator) with ``get_ready()`` / ``done()`` / ``fail()`` / ``is_active()``. It adds
  what graphlib lacks: failure and cancellation that skip the steps downstream, and per-step
  :class:`StepState`.
* :mod:`mcpp.dag.heuristics` computes what a scheduler orders by (levels, critical path,
  inherited priority); :mod:`mcpp.dag.export` renders a graph as DOT, Mermaid or JSON.

None does I/O or concurrency. Wherever an order is not fixed by the edges, definition order
(the order of the mapping given to :class:`Graph`) breaks the tie.
"""

from mcpp.dag.graph import Graph
from mcpp.dag.run import RunState
from mcpp.status import StepState

__all__ = ["Graph", "RunState", "StepState"]
