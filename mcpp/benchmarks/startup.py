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
from typing import Any

from mcpp.benchmarks import report, workloads
from mcpp.benchmarks.common import (
    BenchmarkError,
    base_parser,
    document,
    figure,
    selected_modes,
    stats,
    target,
)
from mcpp.workflow.spec import ActorMode

__all__ = ["main", "parser", "time_process"]

BASELINE = (
    "import concurrent.futures as cf\n"
    "with cf.ProcessPoolExecutor(1) as pool:\n"
    "    assert pool.submit(abs, -1).result() == 1\n"
)


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    return base_parser("startup", "Whole-process time of the CLI on a one-step workflow.")


def time_process(cmd: Sequence[str], timeout: float) -> float:
    """Run ``cmd`` to its end; return its wall time. Raises BenchmarkError if it fails."""
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise BenchmarkError(f"{cmd[:4]} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return took


def workflow_file(folder: Path, mode: ActorMode) -> Path:
    """Write a one-step workflow in ``mode`` to ``folder``; return its path."""
    path = folder / f"one_{mode}.toml"
    path.write_text(
        f'[workflow]\nname = "one"\nactors = "{mode}"\nworkers = 1\n'
        f'[[steps]]\nid = "only"\nrun = "{target(workloads.noop)}"\n'
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    notes: dict[str, Any] = {"cold": "a new interpreter each time; the OS file cache is warm"}
    python = sys.executable
    floor = [time_process([python, "-c", "pass"], args.timeout) for _ in range(args.repeat)]
    baseline = [time_process([python, "-c", BASELINE], args.timeout) for _ in range(args.repeat)]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, reason in selected_modes(args, notes).items():
            if reason is not None:
                figures[mode] = None
                continue
            cmd = [python, "-m", "mcpp.supervisor", "spawn", str(workflow_file(Path(tmp), mode))]
            walls = [time_process([*cmd, "--quiet"], args.timeout) for _ in range(args.repeat)]
            figures[mode] = {"cli_one_step_s": figure("s", walls, baseline)}
    doc = document("startup", args, figures, notes, python_floor_s=stats(floor))
    report.output(doc, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
