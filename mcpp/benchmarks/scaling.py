"""CPU scaling: K CPU-bound steps on 1..cpu_count workers, against the same K calls run one
after another in this process.

Each step is a pure-Python loop calibrated here to about ``--step-s`` seconds of one core. For
w workers mcpp runs with ``max_concurrent=w`` (and ``workers=w`` in pool mode), the baseline
with ``max_workers=w``; ``speedup`` = serial wall / in-run span (ideally min(w, K)). The issue's
target: 8 steps of 0.5 s reach >= 1.9x on 2 workers in pool mode.

    python -m mcpp.benchmarks.scaling [--steps K] [--step-s S] [--worker-counts 1,2] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from mcpp.benchmarks import common, workloads
from mcpp.benchmarks.document import Figures, Target, figure
from mcpp.workflow.spec import ActorMode

__all__ = ["TARGET", "calibrate", "main", "measure_mode", "parser"]

# The target: 8 CPU-bound steps of 0.5 s, 2 workers, pool mode.
TARGET = Target(">=", 1.9)
TARGET_WORKERS = 2


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = common.base_parser("scaling", "Speed-up of CPU-bound steps with 1..cpu_count workers.")
    p.add_argument("--steps", type=int, default=8, metavar="K", help="CPU-bound steps (8)")
    p.add_argument("--step-s", type=float, default=0.5, metavar="S", help="seconds a step (0.5)")
    p.add_argument(
        "--worker-counts",
        type=common.comma_list(int),
        default=list(range(1, (os.cpu_count() or 1) + 1)),
        metavar="W,W",
        help="worker counts to measure, comma-separated (1..cpu_count)",
    )
    return p


def calibrate(seconds: float) -> int:
    """Return the iteration count of :func:`workloads.spin` that takes about ``seconds`` of
    CPU here. CPU time (``time.process_time``), not wall time: other processes on a busy
    machine would make the loop look slower and the steps shorter."""
    iterations = 20_000
    while True:
        began = time.process_time()
        workloads.spin(iterations)
        took = time.process_time() - began
        if took > 0.2 or iterations > 10**9:
            return max(1, int(iterations * seconds / took))
        iterations *= 4


def measure_mode(
    args: argparse.Namespace, mode: ActorMode, tasks: list[common.Task], serial_s: float
) -> Figures:
    """Wall time, span and speed-up of ``tasks`` on every worker count, in ``mode``."""
    runs = common.compare(args, mode, {f"workers={w}": (tasks, w) for w in args.worker_counts})
    return {
        name: {
            "wall_s": run.figure("s", lambda t: t.wall),
            "span_s": run.figure("s", lambda t: t.span),
            "speedup": run.figure(
                "x",
                lambda t: serial_s / t.span,
                target=TARGET if mode == "pool" and name == f"workers={TARGET_WORKERS}" else None,
            ),
        }
        for name, run in runs.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.steps, args.step_s = 2, 0.05
        args.worker_counts = [w for w in args.worker_counts if w <= 2]
    notes = {
        "span_s": common.IN_RUN,
        "wall_s": common.WALL_S,
        "speedup": "serial wall (the K calls one after another in this process) / span",
    }
    common.warm_up(args)
    iterations = calibrate(args.step_s)
    tasks = [
        common.Task(f"s{i}", workloads.spin, {"iterations": iterations}) for i in range(args.steps)
    ]
    serial = []
    for _ in range(max(args.repeat, 1)):
        began = time.perf_counter()
        for task in tasks:
            task.fn(**task.args)
        serial.append(time.perf_counter() - began)
    figures: Figures = {"serial_s": figure("s", serial, None)}
    for mode in args.modes:
        figures[mode] = measure_mode(args, mode, tasks, statistics.median(serial))
    return common.finish("scaling", args, figures, notes, iterations=iterations)


if __name__ == "__main__":
    raise SystemExit(main())
