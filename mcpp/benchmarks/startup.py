"""Start-up: the whole-process time of the CLI running a one-step workflow, cold.

Each repetition is a new process: ``python -m mcpp.supervisor spawn FILE --quiet`` on a
workflow of one no-op step, timed from before the process starts until it has exited (imports,
the actor tree, the step, the tear-down). "Cold" means a new interpreter; the operating system's
file cache is warm after the first repetition. The baseline is a new interpreter that runs one
call on a stdlib ``ProcessPoolExecutor`` and exits; ``python -c pass`` is reported as the floor.

    python -m mcpp.benchmarks.startup [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mcpp.benchmarks import common, workloads
from mcpp.benchmarks.document import Stats, figure

__all__ = ["main", "parser", "time_process"]

BASELINE = (
    "import concurrent.futures as cf\n"
    "with cf.ProcessPoolExecutor(1) as pool:\n"
    "    assert pool.submit(abs, -1).result() == 1\n"
)


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    return common.base_parser("startup", "Whole-process time of the CLI on a one-step workflow.")


def time_process(cmd: Sequence[str], timeout: float) -> float:
    """Run ``cmd`` to its end; return its wall time. Raises BenchmarkError if it fails."""
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise common.BenchmarkError(f"{cmd[:4]} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return took


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    notes = {"cold": "a new interpreter each time; the OS file cache is warm"}
    common.warm_up(args)

    def walls(*cmd: str) -> list[float]:
        return [time_process(cmd, args.timeout) for _ in range(args.repeat)]

    floor = walls(sys.executable, "-c", "pass")
    baseline = walls(sys.executable, "-c", BASELINE)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            path = Path(tmp, f"one_{mode}.json")
            common.write_workflow(path, [common.Task("only", workloads.noop)], mode=mode, workers=1)
            spawn = walls(sys.executable, "-m", "mcpp.supervisor", "spawn", str(path), "--quiet")
            figures[mode] = {"cli_one_step_s": figure("s", spawn, baseline)}
    return common.finish("startup", args, figures, notes, python_floor_s=Stats.of(floor))


if __name__ == "__main__":
    raise SystemExit(main())
