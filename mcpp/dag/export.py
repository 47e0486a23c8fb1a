"""A :class:`~mcpp.dag.Graph` as text: Graphviz DOT, Mermaid and JSON (``mcpp graph``).

Each function takes the graph and an optional :class:`~mcpp.status.StepState` per step (a
subset of the steps is fine), which colours the node; a state for a step that is not in the
graph raises ``KeyError``. Edges go from a dependency to its dependent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mcpp.dag.graph import Graph
from mcpp.status import LOOKS, StepState

__all__ = ["to_dot", "to_json", "to_mermaid"]


def dot_quote(text: str) -> str:
    """``text`` as a quoted DOT id."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


States = Mapping[str, StepState] | None


def known_states(graph: Graph, states: States) -> dict[str, str]:
    """``states`` by value; raises ``KeyError`` for a step that is not in ``graph``."""
    for step in states or {}:
        graph.index(step)
    return {step: state.value for step, state in (states or {}).items()}


def to_dot(graph: Graph, states: States = None, *, name: str = "workflow") -> str:
    """The graph in Graphviz DOT, named ``name``; a step with a state is filled with its
    colour and labelled with the state."""
    steps, edges, values = graph.steps, graph.edges(), known_states(graph, states)
    lines = [f"digraph {dot_quote(name)} {{", "  rankdir=LR;"]
    lines.append('  node [shape=box, style="rounded,filled", fillcolor="#ffffff"];')
    for step in steps:
        node = dot_quote(step)
        if (state := values.get(step)) is None:
            lines.append(f"  {node};")
        else:
            label = f'{node[:-1]}\\n{state}"'
            lines.append(f'  {node} [label={label}, fillcolor="{LOOKS[StepState(state)].fill}"];')
    lines.extend(f"  {dot_quote(a)} -> {dot_quote(b)};" for a, b in edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: Graph, states: States = None) -> str:
    """The graph as a Mermaid flowchart. Nodes are ``s0, s1, ...`` in definition order,
    labelled with their ids; ``states`` assigns each node the class of its state."""
    steps, edges, values = graph.steps, graph.edges(), known_states(graph, states)
    node = {step: f"s{i}" for i, step in enumerate(steps)}
    lines = ["flowchart LR"]
    for step in steps:
        label = step.replace('"', "#quot;")
        lines.append(f'  {node[step]}["{label}"]')
    lines.extend(f"  {node[a]} --> {node[b]}" for a, b in edges)
    for state, look in LOOKS.items():
        members = [node[step] for step in steps if values.get(step) == state]
        if members:
            lines.append(f"  classDef {state} fill:{look.fill},stroke:#333")
            lines.append(f"  class {','.join(members)} {state}")
    return "\n".join(lines) + "\n"


def to_json(graph: Graph, states: States = None) -> str:
    """The graph as JSON: ``{"nodes": [{"id", "state"}], "edges": [{"from", "to"}]}``.

    Nodes are in definition order, ``state`` is the state's value or ``null``.
    """
    values = known_states(graph, states)
    nodes = [{"id": step, "state": values.get(step)} for step in graph.steps]
    links = [{"from": a, "to": b} for a, b in graph.edges()]
    return json.dumps({"nodes": nodes, "edges": links}, indent=2)
