"""Fault detection: how long until a failure is in the run result, and what is left behind.

Five faults, each in a one-step run: ``raise`` (the time of the raise travels in the message),
``timeout`` (a sleep past its timeout, from the step's ``StepStarted`` plus the timeout, the
process's stop included), ``sigkill`` (this process kills the step's when it starts),
``shell_timeout`` (a step waiting on a ``sleep`` child past its timeout: the child must end
with the step) and ``daemon`` (the step double-forks a daemon and returns: from its return to
its recorded success, mcpp ending the daemon between). This process is a child subreaper, so
orphans and daemons count among the ``processes_left``. The baseline runs the same faults on a
one-worker ProcessPoolExecutor (a timeout is ``cf.wait(timeout=)``, its worker then killed).

    python -m mcpp.benchmarks.faults [--step-timeout S] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from mcpp import protocol
from mcpp.actors import contain
from mcpp.benchmarks import common, workloads
from mcpp.benchmarks.document import Figures
from mcpp.supervisor.results import RunRecorder
from mcpp.workflow.spec import ActorMode

__all__ = ["FAULTS", "fault_baseline", "fault_mcpp", "main", "parser"]

FAULTS = ("raise", "timeout", "sigkill", "shell_timeout", "daemon")
# The step's status each fault ends in (the run's: "succeeded" for a daemon, else "failed").
ENDS = {"timeout": "timed_out", "shell_timeout": "timed_out", "daemon": "succeeded"}
SLEEP_S = 120.0
KILL_AFTER_S = 0.1


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = common.base_parser("faults", "Time to detect a raise, a timeout and a SIGKILL; leftovers.")
    p.add_argument("--step-timeout", type=float, default=0.5, help="timeout of the step (0.5 s)")
    return p


def fault_task(fault: str, step_timeout: float) -> common.Task:
    """The one task of ``fault``."""
    if fault == "raise":
        return common.Task("fault", workloads.raise_now)
    fn = {"daemon": workloads.daemonize, "shell_timeout": workloads.shell_sleep}
    limit = step_timeout if fault.endswith("timeout") else None
    return common.Task("fault", fn.get(fault, workloads.sleep), {"seconds": SLEEP_S}, timeout=limit)


def descendants() -> set[int]:
    """Pids of the living (non-zombie) descendants of this process."""
    return {pid for pid in contain.tree() if contain.alive(pid)}


def leftovers(before: set[int]) -> int:
    """Count the new descendants of this process, then end them; return the count."""
    left = descendants() - before
    contain.end(lambda: left, grace=0)
    return len(left)


def fault_mcpp(
    fault: str, mode: ActorMode, step_timeout: float, timeout: float
) -> tuple[float, int]:
    """Run ``fault`` on mcpp; return (detection time in ms, processes left)."""
    began: dict[str, float] = {}
    detected: list[float] = []

    def on_event(recorder: RunRecorder, event: Any) -> None:
        now = time.time()
        if isinstance(event, protocol.StepStarted):
            began["at"] = event.at
            if fault == "sigkill":
                began["kill"] = time.time()
                os.kill(event.pid, signal.SIGKILL)
        elif isinstance(event, protocol.StepSucceeded) and fault == "daemon":
            detected.append(now - float(protocol.decode_value(event.result)))
        elif isinstance(event, protocol.StepFailed) and not event.will_retry:
            if fault == "raise":
                detected.append(now - float(event.error.message))
            elif fault.endswith("timeout"):
                detected.append(now - (began["at"] + step_timeout))
            else:
                detected.append(now - began["kill"])

    spec = common.to_spec([fault_task(fault, step_timeout)], name=fault, mode=mode, workers=1)
    before = descendants()
    ends = ENDS.get(fault, "failed")
    expect = "succeeded" if ends == "succeeded" else "failed"
    result, _ = common.run_mcpp(spec, timeout=timeout, on_event=on_event, expect=expect)
    left, status = leftovers(before), result.steps["fault"].status
    if status != ends or not detected:
        raise common.BenchmarkError(f"fault {fault!r}: the step ended {status}, seen: {detected}")
    return 1000 * detected[0], left


def fault_baseline(fault: str, step_timeout: float) -> tuple[float, int]:
    """Run ``fault`` on a one-worker ProcessPoolExecutor; return (detection ms, left)."""
    before = descendants()
    with common.open_baseline(1) as submit:
        pid = submit(workloads.getpid, {}).result()
        task = fault_task(fault, step_timeout)
        submitted = time.time()
        future = submit(task.fn, dict(task.args))
        if fault == "raise":
            took = time.time() - float(str(future.exception()))
        elif fault == "daemon":
            took = time.time() - float(future.result())
        elif fault.endswith("timeout"):
            cf.wait([future], timeout=step_timeout)
            took = time.time() - (submitted + step_timeout)
            os.kill(pid, signal.SIGKILL)
        else:
            time.sleep(KILL_AFTER_S)
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            future.exception()
            took = time.time() - killed
    return 1000 * took, leftovers(before)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    contain.become_subreaper(sweep=False)
    notes = {
        "detect_ms": "from the fault until the run result records it",
        "processes_left": "new descendants of the benchmark (a subreaper: orphans count) right "
        "after each run; must be 0",
    }
    common.warm_up(args)
    figures: Figures = {}
    for mode in args.modes:
        figures[mode] = {}
        for fault in FAULTS:
            repeat = range(args.repeat)
            mine = [fault_mcpp(fault, mode, args.step_timeout, args.timeout) for _ in repeat]
            base = [fault_baseline(fault, args.step_timeout) for _ in repeat]
            runs = common.Runs(mine, base)
            figures[mode][fault] = {
                "detect_ms": runs.figure("ms", lambda r: r[0]),
                "processes_left": runs.figure("", lambda r: r[1]),
            }
    return common.finish("faults", args, figures, notes)


if __name__ == "__main__":
    raise SystemExit(main())
