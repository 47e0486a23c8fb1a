"""A benchmark's figures and the document it prints, as msgspec Structs.

Each benchmark prints one :class:`Document`. Its ``figures`` are a tree (mode, shape, ...) whose
leaves are :class:`Figure` s: mcpp's and the baseline's :class:`Stats` over the repetitions,
their ratio (median mcpp / median baseline), the issue's :class:`Target` for mcpp's median (None
where the issue sets none) and whether the median meets it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import operator
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import msgspec

__all__ = [
    "Document", "Figure", "Figures", "Machine", "Stats", "Target", "document", "emit", "figure",
    "leaves", "output", "quantity",
]  # fmt: skip

PACKAGES = ("mcpp", "trio", "msgspec", "psutil")
BASELINE = "concurrent.futures.ProcessPoolExecutor ('forkserver') + a plain DAG loop"


class Stats(msgspec.Struct, frozen=True):
    """The minimum, median and maximum of ``n`` repetitions (6 significant digits)."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """The stats of ``values``. Raises ValueError if there are none."""
        if not values:
            raise ValueError("no values to summarise")
        low, mid, high = (float(f"{f(values):.6g}") for f in (min, statistics.median, max))
        return cls(low, mid, high, len(values))


class Target(msgspec.Struct, frozen=True):
    """A target of the issue for a figure's median: ``median op value``."""

    op: Literal[">=", "<=", "<"]
    value: float

    def met(self, median: float) -> bool:
        """Whether ``median`` meets the target."""
        compare = {">=": operator.ge, "<=": operator.le, "<": operator.lt}[self.op]
        return bool(compare(median, self.value))


class Figure(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One measured figure; ``steps`` and ``target_steps`` only where they say something."""

    unit: str
    mcpp: Stats
    baseline: Stats | None
    ratio: float | None
    target: Target | None
    meets_target: bool | None
    steps: int | None = None
    target_steps: int | None = None


def figure(
    unit: str,
    mcpp: Sequence[float],
    baseline: Sequence[float] | None,
    *,
    target: Target | None = None,
    steps: int | None = None,
    target_steps: int | None = None,
) -> Figure:
    """The figure of ``mcpp``'s and ``baseline``'s values (None: the baseline has no
    counterpart); ratio of the medians, and whether mcpp's median meets ``target``."""
    mine = Stats.of(mcpp)
    base = Stats.of(baseline) if baseline else None
    ratio = float(f"{mine.median / base.median:.4g}") if base and base.median else None
    met = None if target is None else target.met(mine.median)
    return Figure(unit=unit, mcpp=mine, baseline=base, ratio=ratio, target=target,
                  meets_target=met, steps=steps, target_steps=target_steps)  # fmt: skip


# A tree of figures: names (a mode, a shape, ...) down to Figure leaves. msgspec decodes no
# union of a Struct and a dict, so a decoded document holds plain dicts: see :func:`leaves`.
Figures: TypeAlias = dict[str, Any]


def leaves(figures: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, Figure]]:
    """Yield ``("a/b/c", figure)`` for every figure of a tree, decoded or not, in order."""
    for key, node in figures.items():
        if isinstance(node, Figure) or "unit" in node:
            yield "/".join((*path, key)), msgspec.convert(node, Figure, from_attributes=True)
        else:
            yield from leaves(node, (*path, key))


class Machine(msgspec.Struct, frozen=True):
    """Where a benchmark ran: CPUs, Python, platform, versions of mcpp and its runtime (the load
    around a run is the :class:`~mcpp.benchmarks.all.Suite`'s)."""

    cpu_count: int | None
    python: str
    platform: str
    packages: dict[str, str]

    @classmethod
    def here(cls) -> Machine:
        """This machine, now."""
        versions = {name: importlib.metadata.version(name) for name in PACKAGES}
        return cls(
            cpu_count=os.cpu_count(),
            python=platform.python_version(),
            platform=platform.platform(),
            packages=versions,
        )


class Document(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a benchmark prints: its parameters, the machine, the figures and their notes.

    ``iterations`` (scaling's calibrated loop) and ``python_floor_s`` (startup's bare
    interpreter) are set by one benchmark each.
    """

    benchmark: str
    parameters: dict[str, Any]
    machine: Machine
    baseline: str
    figures: Figures
    notes: dict[str, Any]
    iterations: int | None = None
    python_floor_s: Stats | None = None


def document(
    name: str, args: argparse.Namespace, figures: Figures, notes: Mapping[str, Any], **extra: Any
) -> Document:
    """The document of benchmark ``name`` run with ``args``."""
    return Document(
        benchmark=name,
        parameters={k: v for k, v in vars(args).items() if k != "json"},
        machine=Machine.here(),
        baseline=BASELINE,
        figures=figures,
        notes=dict(notes),
        **extra,
    )


def quantity(value: float, unit: str) -> str:
    """``value`` with its unit, to 3 significant digits (whole numbers from 1,000)."""
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text}x" if unit == "x" else f"{text} {unit}".rstrip()


def emit(value: Any) -> None:
    """Print ``value`` as indented JSON on standard output."""
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(value)) + b"\n")
    sys.stdout.flush()


def output(doc: Document, as_json: bool) -> None:
    """Print ``doc`` as JSON (``as_json``), else one line a figure and the notes."""
    if as_json:
        emit(doc)
        return
    for path, fig in leaves(doc.figures):
        line = f"{path}: mcpp {quantity(fig.mcpp.median, fig.unit)}"
        if fig.baseline is not None:
            ratio = "" if fig.ratio is None else f", ratio {fig.ratio:.3g}x"
            line += f", baseline {quantity(fig.baseline.median, fig.unit)}{ratio}"
        if fig.target is not None:
            want = f"{fig.target.op} {quantity(fig.target.value, fig.unit)}"
            line += f", target {want}: {'met' if fig.meets_target else 'NOT met'}"
        print(line)
    for key, note in doc.notes.items():
        print(f"- {key}: {note}")
