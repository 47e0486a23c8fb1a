"""Per-step overhead: how fast mcpp runs no-op steps, against the stdlib baseline, in-run.

Shapes (the issue's sizes by default): pool mode runs a fan-out of ``--n`` (1,000) independent
no-op steps plus a join, a chain of ``--chain`` (200) dependent steps and a layered DAG of
``--layers`` x ``--width`` (10 x 50; each step depends on two of the layer before); per-step
mode (a process per step) runs a fan-out of ``--per-step-n`` (20) plus a join and a chain of
``--per-step-chain`` (10). The baseline runs the same shapes with as many workers.

Timing is in-run: the whole runtime (DAG bookkeeping, messages, the journal) but not its
start-up or tear-down. An mcpp run is journalled as ``spawn`` journals it (a temporary MCPP
home) and timed by :class:`~mcpp.benchmarks.common.Span`: from the earliest ``StepStarted``
(the time the worker stamped on it) to the moment the supervisor sees ``RunFinished``. The
journal's writes during the run are inside the span; the last batch it writes as the run
closes is not. The baseline's pool has every
worker started and warm before its clock starts, at the first submission; it stops at the
last result.

Figures per shape: ``steps_per_s`` (fan-outs and the layered DAG: steps / in-run seconds) or
``ms_per_hop`` (chains: in-run milliseconds / steps), each with the issue's target where it
sets one; and ``wall_s``, the whole run with start-up and tear-down (the baseline's: creating,
warming and shutting down its pool), for reference.

    python -m mcpp.benchmarks.dispatch [--repeat R] [--json] [--smoke] [--modes pool]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mcpp.benchmarks import report
from mcpp.benchmarks.common import (
    Span,
    Task,
    base_parser,
    chain,
    document,
    fanout,
    figure,
    goal,
    layered,
    peers_available,
    run_mcpp,
    selected_modes,
    span_baseline,
    span_peer,
    to_spec,
)
from mcpp.workflow.spec import ActorMode

__all__ = ["TARGETS", "Shape", "main", "measure_mode", "parser", "shapes"]

# The targets (issue 4), by mode and shape kind; None where it sets none.
TARGETS: Mapping[ActorMode, Mapping[str, Mapping[str, Any] | None]] = {
    "pool": {
        "fanout": goal(">=", 20_000.0),
        "chain": goal("<=", 0.2),
        "layered": None,
    },
    "per_step": {"fanout": goal(">=", 20.0), "chain": None},
}


class Shape(NamedTuple):
    """A workload of this benchmark: its kind (``fanout``, ``chain``, ``layered``) and tasks."""

    kind: str
    tasks: list[Task]


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = base_parser("dispatch", "In-run throughput and latency of no-op steps.")
    p.add_argument("--n", type=int, default=1000, help="fan-out size, pool mode (1000)")
    p.add_argument("--chain", type=int, default=200, help="chain length, pool mode (200)")
    p.add_argument("--layers", type=int, default=10, help="layers of the DAG, pool mode (10)")
    p.add_argument("--width", type=int, default=50, help="width of the DAG, pool mode (50)")
    p.add_argument("--per-step-n", type=int, default=20, help="fan-out size, per-step (20)")
    p.add_argument("--per-step-chain", type=int, default=10, help="chain length, per-step (10)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="workers / max_concurrent"
    )
    p.add_argument(
        "--no-journal", action="store_true", help="run mcpp without its journal (default: on)"
    )
    return p


def shapes(args: argparse.Namespace, mode: ActorMode) -> dict[str, Shape]:
    """The shapes of ``mode``, named with their sizes."""
    if mode == "per_step":
        n, length = (3, 3) if args.smoke else (args.per_step_n, args.per_step_chain)
        return {
            f"fanout({n}+join)": Shape("fanout", fanout(n)),
            f"chain({length})": chain_of(length),
        }
    n, length, layers, width = (
        (3, 3, 2, 2) if args.smoke else (args.n, args.chain, args.layers, args.width)
    )
    return {
        f"fanout({n}+join)": Shape("fanout", fanout(n)),
        f"chain({length})": chain_of(length),
        f"layered({layers}x{width})": Shape("layered", layered(layers, width)),
    }


def chain_of(length: int) -> Shape:
    """A chain of ``length`` steps."""
    return Shape("chain", chain(length))


def rate(kind: str, steps: int, seconds: Sequence[float]) -> tuple[str, str, list[float]]:
    """The figure of a shape: ``(name, unit, values)`` from its in-run seconds."""
    if kind == "chain":
        return "ms_per_hop", "ms", [1000 * s / steps for s in seconds]
    return "steps_per_s", "steps/s", [steps / s for s in seconds]


def measure_mode(args: argparse.Namespace, mode: ActorMode) -> dict[str, Any]:
    """Every figure of ``mode``: the in-run rate and the wall time of each shape."""
    workers = args.workers
    named = shapes(args, mode)
    peers = peers_available()
    spans: dict[str, dict[str, list[float]]] = {name: {} for name in named}
    walls: dict[str, dict[str, list[float]]] = {name: {} for name in named}

    def record(name: str, system: str, wall: float, span: float) -> None:
        walls[name].setdefault(system, []).append(wall)
        spans[name].setdefault(system, []).append(span)

    for _ in range(args.repeat):
        for name, shape in named.items():
            spec = to_spec(
                shape.tasks, name="dispatch", mode=mode, workers=workers, max_concurrent=workers
            )
            clock = Span()
            wall = run_mcpp(spec, timeout=args.timeout, on_event=clock, journal=not args.no_journal)
            record(name, "mcpp", wall[1], clock.seconds)
            record(name, "baseline", *span_baseline(shape.tasks, workers))
            for peer in peers:
                record(name, peer, *span_peer(peer, shape.tasks, workers))

    out: dict[str, Any] = {}
    for name, shape in named.items():
        steps = len(shape.tasks)
        rates = {system: rate(shape.kind, steps, s) for system, s in spans[name].items()}
        key, unit, _ = rates["mcpp"]
        got = walls[name]
        out[name] = {
            key: figure(
                unit,
                rates["mcpp"][2],
                rates["baseline"][2],
                {p: rates[p][2] for p in peers},
                target=TARGETS[mode][shape.kind],
                steps=steps,
            ),
            "wall_s": figure("s", got["mcpp"], got["baseline"], {p: got[p] for p in peers}),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    notes: dict[str, str] = {
        "in_run": "mcpp: earliest StepStarted.at (stamped by the worker) .. RunFinished seen "
        "by the supervisor, journal " + ("off" if args.no_journal else "on") + "; baseline: "
        "every worker started and warm, first submit .. last result",
        "steps_per_s": "steps (the join included) / in-run seconds",
        "ms_per_hop": "in-run milliseconds / steps of the chain",
        "wall_s": "the whole run, start-up and tear-down included",
    }
    figures: dict[str, Any] = {}
    for mode, reason in selected_modes(args, notes).items():
        figures[mode] = None if reason is not None else measure_mode(args, mode)
    report.output(document("dispatch", args, figures, notes), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
