"""CPU scaling: K CPU-bound steps (a pure-Python loop of about ``--step-s`` seconds each) on
1..cpu_count workers, against running the same K calls one after another in this process.

The loop's iteration count is calibrated here first, so each step costs about ``--step-s``
seconds of one core. For each worker count w, mcpp runs with ``max_concurrent=w`` (and
``workers=w`` in pool mode), the baseline with ``max_workers=w``. Figures per w: ``wall_s`` (the
whole run), ``span_s`` (first step started to last step done: no start-up or tear-down) and
``speedup`` = serial wall / span (the ideal is min(w, K) on an idle machine).

    python -m mcpp.benchmarks.scaling [--steps K] [--step-s S] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from mcpp import protocol
from mcpp.benchmarks import report, workloads
from mcpp.benchmarks.common import (
    Task,
    base_parser,
    document,
    figure,
    open_baseline,
    peers_available,
    run_dag,
    run_mcpp,
    run_peer,
    selected_modes,
    to_spec,
)
from mcpp.results import RunRecorder
from mcpp.spec import ActorMode, WorkflowSpec

__all__ = ["calibrate", "main", "measure_mode", "parser", "span_baseline", "span_mcpp"]


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


def span_mcpp(spec: WorkflowSpec, timeout: float) -> tuple[float, float]:
    """Run ``spec``; return (wall, span): span runs from the first StepStarted to the last
    StepSucceeded the supervisor records, leaving out the actor tree's start and stop."""
    marks: list[float] = []

    def on_event(recorder: RunRecorder, event: Any) -> None:
        if isinstance(event, protocol.StepStarted | protocol.StepSucceeded):
            marks.append(time.perf_counter())

    wall = run_mcpp(spec, timeout=timeout, on_event=on_event)[1]
    return wall, marks[-1] - marks[0]


def span_baseline(tasks: list[Task], workers: int) -> tuple[float, float]:
    """Run ``tasks`` on a new pool; return (wall, span): span runs from the first submission,
    once every worker process is up, to the last result."""
    began = time.perf_counter()
    with open_baseline(workers) as (submit, _):
        cf.wait([submit(workloads.noop, {}) for _ in range(workers)])
        first = time.perf_counter()
        run_dag(submit, tasks)
        span = time.perf_counter() - first
    return time.perf_counter() - began, span


def measure_mode(
    args: argparse.Namespace, mode: ActorMode, tasks: list[Task], serial: list[float]
) -> dict[str, Any]:
    """Wall time, span and speed-up of ``tasks`` on every worker count, in ``mode``."""
    out: dict[str, Any] = {}
    serial_s = statistics.median(serial)
    for workers in range(1, args.max_workers + 1):
        spec = to_spec(tasks, name="scaling", mode=mode, workers=workers, max_concurrent=workers)
        got: dict[str, list[tuple[float, float]]] = {"mcpp": [], "baseline": []}
        for _ in range(args.repeat):
            got["mcpp"].append(span_mcpp(spec, args.timeout))
            got["baseline"].append(span_baseline(tasks, workers))
        peers = {p: [run_peer(p, tasks, workers) for _ in range(args.repeat)] for p in args.peers}
        walls = {k: [w for w, _ in v] for k, v in got.items()}
        spans = {k: [s for _, s in v] for k, v in got.items()}
        speedup = {k: [serial_s / s for s in v] for k, v in spans.items()}
        out[f"workers={workers}"] = {
            "wall_s": figure("s", walls["mcpp"], walls["baseline"], peers),
            "span_s": figure("s", spans["mcpp"], spans["baseline"]),
            "speedup": figure("x", speedup["mcpp"], speedup["baseline"]),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.steps, args.step_s, args.max_workers = 2, 0.05, min(args.max_workers, 2)
    args.peers = peers_available()
    notes: dict[str, Any] = {
        "span_s": "first step started .. last step done (baseline: first submit, workers up)",
        "speedup": "serial wall (the K calls one after another in this process) / span",
        "peers": "peers report wall_s only",
    }
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
