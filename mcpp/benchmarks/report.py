"""Render benchmark documents as Markdown tables, and print a benchmark's outcome.

A row is one figure (a dict with ``unit``, ``mcpp`` and ``baseline``), labelled by its path in
the ``figures`` tree; cells are medians, the ratio is median mcpp / median baseline. A mode that
could not be measured (``None``) becomes one row that says why.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mcpp.benchmarks.common import emit

__all__ = ["markdown", "output", "rows"]


def _cell(value: Mapping[str, float] | None, unit: str) -> str:
    if value is None:
        return "n/a"
    median = value["median"]
    text = f"{median:.3g}" if abs(median) < 1000 else f"{median:,.0f}"
    return f"{text} {unit}"


def rows(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str, list[str]]]:
    """Yield ``(label, mcpp, baseline, ratio, peer cells)`` for each figure of ``doc``."""
    notes = doc.get("notes", {})
    peers: Sequence[str] = doc.get("peers", [])

    def walk(node: Any, path: list[str]) -> Iterator[tuple[str, str, str, str, list[str]]]:
        label = " / ".join(path)
        if node is None:
            reason = notes.get(f"{path[-1]}_unavailable", "not measured") if path else ""
            yield label, f"not measured: {reason}", "", "", ["" for _ in peers]
        elif isinstance(node, Mapping) and "mcpp" in node and "unit" in node:
            unit = node["unit"]
            ratio = "" if node["ratio"] is None else f"{node['ratio']:.3g}x"
            peer_cells = [_cell(node.get(p), unit) for p in peers]
            mine, base = _cell(node["mcpp"], unit), _cell(node["baseline"], unit)
            yield label, mine, base, ratio, peer_cells
        elif isinstance(node, Mapping):
            for key, child in node.items():
                yield from walk(child, [*path, str(key)])

    yield from walk(doc.get("figures", {}), [])


def markdown(docs: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table of every figure of ``docs`` (medians; ratio = mcpp / baseline)."""
    peers = sorted({p for doc in docs for p in doc.get("peers", [])})
    head = ["benchmark", "figure", "mcpp", "baseline", "mcpp / baseline", *peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for doc in docs:
        doc_peers = list(doc.get("peers", []))
        for label, mine, base, ratio, peer_cells in rows(doc):
            by_peer = dict(zip(doc_peers, peer_cells, strict=True))
            cells = [
                doc["benchmark"],
                label,
                mine,
                base,
                ratio,
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
