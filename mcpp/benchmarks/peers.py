"""mcpp next to Ray, Dask and Prefect: this run's figures beside the peers' reference figures.

Ray and Dask are not dependencies (nor installed in CI), so their figures are not measured in
the run: they are the ones measured on this kind of machine (2 cores) with the same workloads,
recorded in ``docs/DEPENDENCIES.md`` ("Peers measured on this machine"); Prefect's is the
process-runner figure of the scheduling issue. mcpp's and the stdlib baseline's come from the
documents of the current run. When Ray or Dask is importable, the benchmarks also measure them
in the run (extra columns of the main table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["REFERENCE", "comparison"]

# workload -> peer -> (value, unit); from docs/DEPENDENCIES.md and the scheduling issue.
REFERENCE: dict[str, dict[str, tuple[float, str]]] = {
    "no-op fan-out (pool), steps/s": {
        "Ray 2.60": (2_100, "steps/s"),
        "Dask distributed 2026.8": (1_100, "steps/s"),
    },
    "chain, ms per hop (pool)": {
        "Ray 2.60": (1.24, "ms"),
        "Dask distributed 2026.8": (5.8, "ms"),
    },
    "8 x 0.5 s CPU steps on 2 cores, speedup": {
        "Ray 2.60": (1.84, "x"),
        "Dask distributed 2026.8": (1.67, "x"),
    },
    "a process per step, steps/s": {"Prefect (process runner)": (7, "steps/s")},
    "idle memory, all processes": {
        "Ray 2.60": (701, "MiB"),
        "Dask distributed 2026.8": (159, "MiB"),
    },
}

# workload -> (benchmark, regex over the figure path) of this run's documents.
FIGURES: dict[str, tuple[str, str]] = {
    "no-op fan-out (pool), steps/s": ("dispatch", r"^pool/fanout\(\d+\+join\)/steps_per_s$"),
    "chain, ms per hop (pool)": ("dispatch", r"^pool/chain\(\d+\)/ms_per_hop$"),
    "8 x 0.5 s CPU steps on 2 cores, speedup": ("scaling", r"^pool/workers=2/speedup$"),
    "a process per step, steps/s": ("dispatch", r"^per_step/fanout\(\d+\+join\)/steps_per_s$"),
    "idle memory, all processes": ("memory", r"^pool/idle/total_mib$"),
}
PEERS = ("Ray 2.60", "Dask distributed 2026.8", "Prefect (process runner)")


def find(docs: Sequence[Mapping[str, Any]], benchmark: str, pattern: str) -> Any:
    """The figure of ``benchmark`` whose path matches ``pattern``, or None."""
    for doc in docs:
        if doc.get("benchmark") != benchmark:
            continue
        stack: list[tuple[Any, str]] = [(doc.get("figures", {}), "")]
        while stack:
            node, path = stack.pop()
            if isinstance(node, Mapping) and "mcpp" in node and "unit" in node:
                if re.match(pattern, path.lstrip("/")):
                    return node
            elif isinstance(node, Mapping):
                stack.extend((child, f"{path}/{key}") for key, child in node.items())
    return None


def cell(value: float | None, unit: str) -> str:
    """A number with its unit, or a dash."""
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def comparison(docs: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown comparison table: this run's mcpp and baseline, the peers' references."""
    head = ["workload", "mcpp (this run)", "stdlib baseline (this run)", *PEERS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for workload, (benchmark, pattern) in FIGURES.items():
        figure = find(docs, benchmark, pattern)
        unit = figure["unit"] if figure else ""
        mine = figure["mcpp"]["median"] if figure and figure.get("mcpp") else None
        base = figure["baseline"]["median"] if figure and figure.get("baseline") else None
        peers = REFERENCE.get(workload, {})
        row = [workload, cell(mine, unit), cell(base, unit)]
        row += [cell(*peers[p]) if p in peers else "" for p in PEERS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
