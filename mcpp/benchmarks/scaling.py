"""CPU scaling: K CPU-bound steps (a pure-Python loop of about ``--step-s`` seconds each) on
1..cpu_count workers, against running the same K calls one after another in this process.

The loop's iteration count is calibrated here first, so each step costs about ``--step-s``
seconds of one core. For each worker count w, mcpp runs with ``max_concurrent=w`` (and
``workers=w`` in pool mode), the baseline with ``max_workers=w``. Figures per w: ``wall_s`` and
``speedup`` (serial wall / wall; the ideal is min(w, K) on an idle machine).

    python -m mcpp.benchmarks.scaling [--steps K] [--step-s S] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

from mcpp.benchmarks import report, workloads
from mcpp.benchmarks.common import (
    Task,
    base_parser,
    document,
    figure,
    peers_available,
    run_baseline,
    run_mcpp,
    run_peer,
    selected_modes,
    to_spec,
)
from mcpp.spec import ActorMode

__all__ = ["calibrate", "main", "measure_mode", "parser"]


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = base_parser("scaling", "Speed-up of CPU-bound steps with 1..cpu_count workers.")
    p.add_argument("--steps", type=int, default=8, metavar="K", help="CPU-bound steps (8)")
    p.add_argument("--step-s", type=float, default=0.5, metavar="S", help="seconds a step (0.5)")
    p.add_argument(
        "--max-workers", type=int, default=os.cpu_count() or 1, help="largest worker count"
    )
    return p


def calibrate(seconds: float) -> int:
    """Return the iteration count of :func:`workloads.spin` that takes about ``seconds`` here."""
    iterations = 20_000
    while True:
        began = time.perf_counter()
        workloads.spin(iterations)
        took = time.perf_counter() - began
        if took > 0.05 or iterations > 10**9:
            return max(1, int(iterations * seconds / took))
        iterations *= 4


def measure_mode(
    args: argparse.Namespace, mode: ActorMode, tasks: list[Task], serial: list[float]
) -> dict[str, Any]:
    """Wall time and speed-up of ``tasks`` on every worker count, in ``mode``."""
    out: dict[str, Any] = {}
    peers = peers_available()
    for workers in range(1, args.max_workers + 1):
        spec = to_spec(tasks, name="scaling", mode=mode, workers=workers, max_concurrent=workers)
        walls: dict[str, list[float]] = {"mcpp": [], "baseline": [], **{p: [] for p in peers}}
        for _ in range(args.repeat):
            walls["mcpp"].append(run_mcpp(spec, timeout=args.timeout)[1])
            walls["baseline"].append(run_baseline(tasks, workers)[1])
            for peer in peers:
                walls[peer].append(run_peer(peer, tasks, workers))
        serial_s = sorted(serial)[len(serial) // 2]
        speedup = {k: [serial_s / w for w in v] for k, v in walls.items()}
        out[f"workers={workers}"] = {
            "wall_s": figure("s", walls["mcpp"], walls["baseline"], {p: walls[p] for p in peers}),
            "speedup": figure(
                "x", speedup["mcpp"], speedup["baseline"], {p: speedup[p] for p in peers}
            ),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.steps, args.step_s, args.max_workers = 2, 0.05, min(args.max_workers, 2)
    notes: dict[str, Any] = {"speedup": "serial wall (K calls in this process) / wall"}
    modes = selected_modes(args, notes)
    iterations = calibrate(args.step_s)
    tasks = [Task(f"s{i}", workloads.spin, {"iterations": iterations}) for i in range(args.steps)]
    serial = []
    for _ in range(max(args.repeat, 1)):
        began = time.perf_counter()
        for task in tasks:
            task.fn(**task.args)
        serial.append(time.perf_counter() - began)
    figures: dict[str, Any] = {"serial_s": figure("s", serial, None)}
    for mode, reason in modes.items():
        figures[mode] = None if reason is not None else measure_mode(args, mode, tasks, serial)
    doc = document("scaling", args, figures, notes, iterations=iterations)
    report.output(doc, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
