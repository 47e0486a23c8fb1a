"""Per-step overhead: how long mcpp takes to run no-op steps, against the stdlib baseline.

Shapes: a fan-out of N independent no-op steps plus a join, a chain of N dependent steps, and a
layered DAG (L layers of W steps, each step depending on two of the layer before). Each is run
in per-step mode (a process per step: smaller sizes, ``--per-step-*``) and in pool mode, and on
the baseline with the same sizes and the same number of workers.

Figures per shape: ``wall_s`` (the whole run, actor tree or pool start-up included) and
``per_step_ms`` = (wall of the shape - wall of a one-step run) / (steps - 1), which removes the
fixed start-up cost. ``startup / wall_s`` is the one-step run itself.

    python -m mcpp.benchmarks.dispatch [--repeat R] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from mcpp.benchmarks import report
from mcpp.benchmarks.common import (
    Task,
    base_parser,
    chain,
    document,
    fanout,
    figure,
    layered,
    peers_available,
    run_baseline,
    run_mcpp,
    run_peer,
    selected_modes,
    to_spec,
)
from mcpp.spec import ActorMode

__all__ = ["main", "measure_mode", "parser", "shapes"]


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = base_parser("dispatch", "Per-step overhead of no-op steps in three DAG shapes.")
    p.add_argument("--n", type=int, default=100, help="fan-out and chain size, pool mode (100)")
    p.add_argument("--layers", type=int, default=10, help="layers of the DAG, pool mode (10)")
    p.add_argument("--width", type=int, default=50, help="width of the DAG, pool mode (50)")
    p.add_argument("--per-step-n", type=int, default=20, help="fan-out/chain, per-step (20)")
    p.add_argument("--per-step-layers", type=int, default=4, help="layers, per-step mode (4)")
    p.add_argument("--per-step-width", type=int, default=5, help="width, per-step mode (5)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="workers / max_concurrent"
    )
    return p


def shapes(args: argparse.Namespace, mode: ActorMode) -> dict[str, list[Task]]:
    """The three shapes, named with their sizes, for ``mode``."""
    if args.smoke:
        n, layers, width = 3, 2, 2
    elif mode == "per_step":
        n, layers, width = args.per_step_n, args.per_step_layers, args.per_step_width
    else:
        n, layers, width = args.n, args.layers, args.width
    return {
        f"fanout({n}+join)": fanout(n),
        f"chain({n})": chain(n),
        f"layered({layers}x{width})": layered(layers, width),
    }


def _per_step_ms(walls: Sequence[float], ones: Sequence[float], steps: int) -> list[float]:
    return [1000 * (w - o) / max(steps - 1, 1) for w, o in zip(walls, ones, strict=True)]


def measure_mode(args: argparse.Namespace, mode: ActorMode) -> dict[str, Any]:
    """Every figure of ``mode``: start-up, then wall time and per-step cost of each shape."""
    workers = args.workers
    one = chain(1)
    named = shapes(args, mode)
    peers = peers_available()
    walls: dict[str, dict[str, list[float]]] = {key: {} for key in ["startup", *named]}

    def record(key: str, system: str, value: float) -> None:
        walls[key].setdefault(system, []).append(value)

    def spec_of(tasks: list[Task], name: str) -> Any:
        return to_spec(tasks, name=name, mode=mode, workers=workers, max_concurrent=workers)

    for _ in range(args.repeat):
        record("startup", "mcpp", run_mcpp(spec_of(one, "one"), timeout=args.timeout)[1])
        record("startup", "baseline", run_baseline(one, workers)[1])
        for peer in peers:
            record("startup", peer, run_peer(peer, one, workers))
        for name, tasks in named.items():
            record(name, "mcpp", run_mcpp(spec_of(tasks, "dispatch"), timeout=args.timeout)[1])
            record(name, "baseline", run_baseline(tasks, workers)[1])
            for peer in peers:
                record(name, peer, run_peer(peer, tasks, workers))

    start = walls["startup"]
    out: dict[str, Any] = {
        "startup": {
            "wall_s": figure(
                "s", start["mcpp"], start["baseline"], {p: start[p] for p in peers}, steps=1
            )
        }
    }
    for name, tasks in named.items():
        got = walls[name]
        per_step = {
            system: _per_step_ms(values, start[system], len(tasks))
            for system, values in got.items()
        }
        out[name] = {
            "wall_s": figure(
                "s", got["mcpp"], got["baseline"], {p: got[p] for p in peers}, steps=len(tasks)
            ),
            "per_step_ms": figure(
                "ms", per_step["mcpp"], per_step["baseline"], {p: per_step[p] for p in peers}
            ),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    notes: dict[str, str] = {
        "per_step_ms": "(wall of the shape - wall of a one-step run) / (steps - 1)",
        "sizes": "per-step mode uses the --per-step-* sizes; the baseline runs the same shape",
    }
    figures: dict[str, Any] = {}
    for mode, reason in selected_modes(args, notes).items():
        figures[mode] = None if reason is not None else measure_mode(args, mode)
    report.output(document("dispatch", args, figures, notes), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
