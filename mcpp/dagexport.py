"""Step graphs as text: Graphviz DOT, Mermaid and JSON (used by :class:`mcpp.dag.Graph`).

Each function takes the steps in definition order, the edges as ``(dependency, dependent)``
and an optional state (``"succeeded"``, ...) per step, which colours the node.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from mcpp.status import LOOKS, StepState

__all__ = ["to_dot", "to_json", "to_mermaid"]


def dot_quote(text: str) -> str:
    """``text`` as a quoted DOT id."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(
    steps: Sequence[str],
    edges: Iterable[tuple[str, str]],
    states: Mapping[str, str],
    name: str = "workflow",
) -> str:
    """The graph in Graphviz DOT; a step with a state is filled with its colour and labelled."""
    lines = [f"digraph {dot_quote(name)} {{", "  rankdir=LR;"]
    lines.append('  node [shape=box, style="rounded,filled", fillcolor="#ffffff"];')
    for step in steps:
        node = dot_quote(step)
        if (state := states.get(step)) is None:
            lines.append(f"  {node};")
        else:
            label = f'{node[:-1]}\\n{state}"'
            lines.append(f'  {node} [label={label}, fillcolor="{LOOKS[StepState(state)].fill}"];')
    lines.extend(f"  {dot_quote(a)} -> {dot_quote(b)};" for a, b in edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(
    steps: Sequence[str], edges: Iterable[tuple[str, str]], states: Mapping[str, str]
) -> str:
    """The graph as a Mermaid flowchart; nodes ``s0, s1, ...`` labelled with their ids."""
    node = {step: f"s{i}" for i, step in enumerate(steps)}
    lines = ["flowchart LR"]
    for step in steps:
        label = step.replace('"', "#quot;")
        lines.append(f'  {node[step]}["{label}"]')
    lines.extend(f"  {node[a]} --> {node[b]}" for a, b in edges)
    for state, look in LOOKS.items():
        members = [node[step] for step in steps if states.get(step) == state]
        if members:
            lines.append(f"  classDef {state} fill:{look.fill},stroke:#333")
            lines.append(f"  class {','.join(members)} {state}")
    return "\n".join(lines) + "\n"


def to_json(
    steps: Sequence[str], edges: Iterable[tuple[str, str]], states: Mapping[str, str]
) -> str:
    """The graph as JSON: ``{"nodes": [{"id", "state"}], "edges": [{"from", "to"}]}``."""
    nodes = [{"id": step, "state": states.get(step)} for step in steps]
    links = [{"from": a, "to": b} for a, b in edges]
    return json.dumps({"nodes": nodes, "edges": links}, indent=2)
