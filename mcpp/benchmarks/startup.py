"""Start-up: the whole-process time of the CLI running a one-step workflow, cold.

Each repetition is a new process: ``python -m mcpp.supervisor spawn FILE --quiet`` on a
workflow of one no-op step, timed from before the process starts until it has exited (imports,
the actor tree, the step, the tear-down). "Cold" means a new interpreter; the operating system's
file cache is warm after the first repetition. The baseline is a new interpreter that runs one
call on a stdlib ``ProcessPoolExecutor`` and exits; ``python -c pass`` is reported as the floor.
``cli_help_s`` and ``cli_status_s`` time ``mcpp --help`` and ``mcpp status`` (an empty home)
the same way, against the floor. The environment's modules (mcpp's and its dependencies') are
byte-compiled first (``compileall``), as ``pip install`` does by default.

    python -m mcpp.benchmarks.startup [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcpp.benchmarks import common, workloads
from mcpp.benchmarks.document import Stats, Target, figure

__all__ = ["LIGHT", "TARGET", "compile_package", "main", "parser", "time_process"]

TARGET = Target("<=", 0.5)  # the issue's, for the whole mcpp spawn of one step
LIGHT = Target("<=", 0.2)  # the issue's, for mcpp --help and mcpp status

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


def compile_package() -> None:
    """Byte-compile mcpp's modules and the environment's (as ``pip install`` does; an
    editable install's sources are not compiled, and with ``PYTHONDONTWRITEBYTECODE`` set every
    process would compile each module it imports)."""
    import sysconfig

    import mcpp

    compileall.compile_dir(os.path.dirname(mcpp.__file__), quiet=1)
    compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    notes = {
        "cold": "a new interpreter each time; the OS file cache is warm; mcpp byte-compiled",
        "cli": "cli_help_s, cli_status_s: against python -c pass (the floor)",
    }
    compile_package()
    common.warm_up(args)

    def walls(*cmd: str) -> list[float]:
        return [time_process(cmd, args.timeout) for _ in range(args.repeat)]

    floor = walls(sys.executable, "-c", "pass")
    baseline = walls(sys.executable, "-c", BASELINE)
    figures: dict[str, Any] = {}
    cli = (sys.executable, "-m", "mcpp.cli")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MCPP_HOME"] = str(Path(tmp, "home"))  # status reads an empty home
        for mode in args.modes:
            path = Path(tmp, f"one_{mode}.json")
            common.write_workflow(path, [common.Task("only", workloads.noop)], mode=mode, workers=1)
            spawn = walls(sys.executable, "-m", "mcpp.supervisor", "spawn", str(path), "--quiet")
            figures[mode] = {"cli_one_step_s": figure("s", spawn, baseline, target=TARGET)}
        figures["cli"] = {
            "cli_help_s": figure("s", walls(*cli, "--help"), floor, target=LIGHT),
            "cli_status_s": figure("s", walls(*cli, "status"), floor, target=LIGHT),
        }
    return common.finish("startup", args, figures, notes, python_floor_s=Stats.of(floor))


if __name__ == "__main__":
    raise SystemExit(main())
