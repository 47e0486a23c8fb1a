"""Per-step overhead: how fast mcpp runs no-op steps, against the stdlib baseline, in-run.

Shapes (the issue's sizes by default): pool mode runs a fan-out of ``--n`` (1,000) no-op steps
plus a join, a chain of ``--chain`` (200) and a layered DAG of ``--layers`` x ``--width``
(10 x 50, each step depending on two of the layer before); per-step mode (a process per step) a
fan-out of ``--per-step-n`` (20) plus a join and a chain of ``--per-step-chain`` (10). The
baseline runs the same shapes with as many workers. mcpp runs journalled, as ``spawn`` runs
(a temporary MCPP home), timed by :class:`~mcpp.benchmarks.common.Span`; the journal's writes
during the run are inside the span, its last batch is not. Figures per shape: ``steps_per_s``
(fan-outs, layered) or ``ms_per_hop`` (chains), with the issue's target where it sets one, and
``wall_s`` (start-up and tear-down included) for reference.

    python -m mcpp.benchmarks.dispatch [--repeat R] [--json] [--smoke] [--modes pool]
    python -m mcpp.benchmarks.dispatch --actors dask [--scheduler tcp://HOST:PORT]

Dask mode runs the per-step shapes, each attempt a Dask task in a process of its own; without
``--scheduler`` each run starts (and stops) a local cluster, outside the in-run span.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

from mcpp.benchmarks import common
from mcpp.benchmarks.document import Figures, Target
from mcpp.workflow.spec import ActorMode

__all__ = ["TARGETS", "main", "measure_mode", "parser", "shapes"]

# The targets (issue 4), by mode and shape kind; None where it sets none.
TARGETS: Mapping[ActorMode, Mapping[str, Target | None]] = {
    "pool": {"fanout": Target(">=", 20_000.0), "chain": Target("<=", 0.2), "layered": None},
    "per_step": {"fanout": Target(">=", 20.0), "chain": None},
    "dask": {"fanout": None, "chain": None},  # per-step sizes: a process per attempt as well
}


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = common.base_parser("dispatch", "In-run rates of no-op steps.", workers=common.CPUS)
    p.add_argument("--n", type=int, default=1000, help="fan-out size, pool mode (1000)")
    p.add_argument("--chain", type=int, default=200, help="chain length, pool mode (200)")
    p.add_argument("--layers", type=int, default=10, help="layers of the DAG, pool mode (10)")
    p.add_argument("--width", type=int, default=50, help="width of the DAG, pool mode (50)")
    p.add_argument("--per-step-n", type=int, default=20, help="fan-out size, per-step (20)")
    p.add_argument("--per-step-chain", type=int, default=10, help="chain length, per-step (10)")
    p.add_argument(
        "--no-journal", action="store_true", help="run mcpp without its journal (default: on)"
    )
    p.add_argument("--actors", choices=list(TARGETS), help="one mode (instead of --modes)")
    p.add_argument(
        "--scheduler", metavar="ADDR", help="--actors dask: the cluster (default: a local one)"
    )
    return p


def shapes(args: argparse.Namespace, mode: ActorMode) -> dict[str, tuple[str, list[common.Task]]]:
    """The shapes of ``mode``, named with their sizes: ``name -> (kind, tasks)``."""
    if args.smoke:
        n, length, layers, width = 3, 3, 2, 2
    elif mode in ("per_step", "dask"):
        n, length = args.per_step_n, args.per_step_chain
    else:
        n, length, layers, width = args.n, args.chain, args.layers, args.width
    named = {
        f"fanout({n}+join)": ("fanout", common.fanout(n)),
        f"chain({length})": ("chain", common.chain(length)),
    }
    if mode == "pool":
        named[f"layered({layers}x{width})"] = ("layered", common.layered(layers, width))
    return named


def rate(kind: str, steps: int, run: common.Runs[common.Timing], target: Target | None) -> Figures:
    """The in-run rate of a shape of ``steps`` steps: ms per hop (a chain) or steps per s."""
    if kind == "chain":
        return {"ms_per_hop": run.figure("ms", lambda t: 1000 * t.span / steps, target=target)}
    return {
        "steps_per_s": run.figure("steps/s", lambda t: steps / t.span, target=target, steps=steps)
    }


def measure_mode(args: argparse.Namespace, mode: ActorMode) -> Figures:
    """Every figure of ``mode``: the in-run rate and the wall time of each shape."""
    named = shapes(args, mode)
    workloads = {name: (tasks, args.workers) for name, (_, tasks) in named.items()}
    runs = common.compare(args, mode, workloads, journal=not args.no_journal)
    return {
        name: {
            **rate(kind, len(tasks), runs[name], TARGETS[mode][kind]),
            "wall_s": runs[name].figure("s", lambda t: t.wall),
        }
        for name, (kind, tasks) in named.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.actors:
        args.modes = [args.actors]
    if args.scheduler:  # the coordinator reads it (mcpp.cluster.launcher)
        os.environ["MCPP_DASK_SCHEDULER"] = args.scheduler
    notes = {
        "in_run": f"{common.IN_RUN}; journal {'off' if args.no_journal else 'on'}",
        "steps_per_s": "steps (the join included) / in-run seconds",
        "ms_per_hop": "in-run milliseconds / steps of the chain",
        "wall_s": common.WALL_S,
    }
    common.warm_up(args)
    figures = {mode: measure_mode(args, mode) for mode in args.modes}
    return common.finish("dispatch", args, figures, notes)


if __name__ == "__main__":
    raise SystemExit(main())
