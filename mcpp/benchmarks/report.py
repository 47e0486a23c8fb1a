"""Render benchmark documents as Markdown tables, and print a benchmark's outcome.

A row is one figure (a dict with ``unit``, ``mcpp`` and ``baseline``), labelled by its path in
the ``figures`` tree; cells are medians, the ratio is median mcpp / median baseline, then the
issue's target for mcpp's median and whether it is met (empty where the issue sets none). A
mode that could not be measured (``None``) becomes one row that says why.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from mcpp.benchmarks.common import emit

__all__ = ["Row", "markdown", "output", "rows"]


class Row(NamedTuple):
    """The cells of one figure's row (``peers``: one cell per peer of the document)."""

    label: str
    mcpp: str
    baseline: str
    ratio: str
    target: str
    meets: str
    peers: list[str]


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _with_unit(text: str, unit: str) -> str:
    return f"{text}x" if unit == "x" else f"{text} {unit}"


def _cell(value: Mapping[str, float] | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return _with_unit(_number(value["median"]), unit)


def _target(node: Mapping[str, Any]) -> tuple[str, str]:
    want = node.get("target")
    if want is None:
        return "", ""
    met = node.get("meets_target")
    verdict = "" if met is None else "yes" if met else "**no**"
    return f"{want['op']} {_with_unit(_number(want['value']), node['unit'])}", verdict


def rows(doc: Mapping[str, Any]) -> Iterator[Row]:
    """Yield a :class:`Row` for each figure of ``doc``."""
    notes = doc.get("notes", {})
    peers: Sequence[str] = doc.get("peers", [])

    def walk(node: Any, path: list[str]) -> Iterator[Row]:
        label = " / ".join(path)
        if node is None:
            reason = notes.get(f"{path[-1]}_unavailable", "not measured") if path else ""
            yield Row(label, f"not measured: {reason}", "", "", "", "", ["" for _ in peers])
        elif isinstance(node, Mapping) and "mcpp" in node and "unit" in node:
            unit = node["unit"]
            ratio = "" if node["ratio"] is None else f"{node['ratio']:.3g}x"
            peer_cells = [_cell(node.get(p), unit) for p in peers]
            mine, base = _cell(node["mcpp"], unit), _cell(node["baseline"], unit)
            yield Row(label, mine, base, ratio, *_target(node), peer_cells)
        elif isinstance(node, Mapping):
            for key, child in node.items():
                yield from walk(child, [*path, str(key)])

    yield from walk(doc.get("figures", {}), [])


def markdown(docs: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table of every figure of ``docs`` (medians; ratio = mcpp / baseline;
    the issue's target for mcpp's median and whether it is met)."""
    peers = sorted({p for doc in docs for p in doc.get("peers", [])})
    head = ["benchmark", "figure", "mcpp", "baseline", "mcpp / baseline", "target", "met", *peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for doc in docs:
        doc_peers = list(doc.get("peers", []))
        for row in rows(doc):
            by_peer = dict(zip(doc_peers, row.peers, strict=True))
            cells = [
                doc["benchmark"],
                row.label,
                row.mcpp,
                row.baseline,
                row.ratio,
                row.target,
                row.meets,
                *(by_peer.get(p, "") for p in peers),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def output(doc: Mapping[str, Any], as_json: bool) -> None:
    """Print ``doc`` as JSON (``as_json``) or as a Markdown table with its notes."""
    if as_json:
        emit(doc)
        return
    print(markdown([doc]))
    for key, note in doc.get("notes", {}).items():
        print(f"- {key}: {note}")
