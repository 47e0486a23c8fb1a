"""Fault detection: how long until a failure is in the run result, and what is left behind.

Five faults, each in a one-step run:

* ``raise``: the step raises; the time of the raise travels in the exception's message.
* ``timeout``: the step sleeps past its ``timeout``; measured from the step's start (the
  ``StepStarted`` time) plus the timeout. Includes stopping the step's process.
* ``sigkill``: the step's process is SIGKILLed (by this process, when ``StepStarted`` arrives).
* ``shell_timeout``: the step waits on a ``sleep`` child process past its ``timeout``; measured
  as ``timeout``. The ``sleep`` must be ended with the step.
* ``daemon``: the step starts a double-forked daemon and returns; measured from its return
  until its success is recorded (mcpp ends the daemon in between).

``detect_ms`` ends when the supervisor records the step's outcome (the ``on_event`` hook).
``processes_left`` counts this process's new descendants right after the run returns; it must
be 0. This process is a child subreaper, so a step's orphans and daemons are its descendants
too, as they would be under an init; they are ended after being counted. The baseline runs the
same faults on a one-worker ProcessPoolExecutor: ``future`` exception for a raise and a kill
(BrokenProcessPool), ``concurrent.futures.wait(timeout=)`` for a timeout (measured from
submission; the stuck worker is then killed, as mcpp does).

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
from mcpp.benchmarks import workloads
from mcpp.benchmarks.common import (
    BenchmarkError,
    Task,
    base_parser,
    open_baseline,
    run_mcpp,
    to_spec,
    warm_up,
)
from mcpp.benchmarks.document import Figures, document, figure, output
from mcpp.supervisor.results import RunRecorder
from mcpp.workflow.spec import ActorMode

__all__ = ["FAULTS", "StartedLate", "fault_baseline", "fault_mcpp", "main", "parser"]

FAULTS = ("raise", "timeout", "sigkill", "shell_timeout", "daemon")
# The step's status each fault ends in (the run's: "succeeded" for a daemon, else "failed").
ENDS = {"timeout": "timed_out", "shell_timeout": "timed_out", "daemon": "succeeded"}
SLEEP_S = 120.0
KILL_AFTER_S = 0.1


class StartedLate(BenchmarkError):
    """A timeout fault ended before the step had started: nothing to measure."""


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = base_parser("faults", "Time to detect a raise, a timeout and a SIGKILL; leftovers.")
    p.add_argument("--step-timeout", type=float, default=0.5, help="timeout of the step (0.5 s)")
    return p


def fault_task(fault: str, step_timeout: float) -> Task:
    """The one task of ``fault``."""
    if fault == "raise":
        return Task("fault", workloads.raise_now)
    if fault == "daemon":
        return Task("fault", workloads.daemonize, {"seconds": SLEEP_S})
    if fault == "shell_timeout":
        return Task("fault", workloads.shell_sleep, {"seconds": SLEEP_S}, timeout=step_timeout)
    limit = step_timeout if fault == "timeout" else None
    return Task("fault", workloads.sleep, {"seconds": SLEEP_S}, timeout=limit)


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
            elif fault in ("timeout", "shell_timeout") and "at" in began:
                detected.append(now - (began["at"] + step_timeout))
            else:
                detected.append(now - began["kill"])

    spec = to_spec([fault_task(fault, step_timeout)], name=f"fault-{fault}", mode=mode, workers=1)
    before = descendants()
    ends = ENDS.get(fault, "failed")
    expect = "succeeded" if ends == "succeeded" else "failed"
    result, _ = run_mcpp(spec, timeout=timeout, on_event=on_event, expect=expect)
    left = leftovers(before)
    if result.steps["fault"].status != ends:
        raise BenchmarkError(f"fault {fault!r}: the step ended {result.steps['fault'].status}")
    if not detected:
        raise StartedLate(f"the step timed out before it started ({step_timeout:g} s)")
    return 1000 * detected[0], left


def retried(fault: str, mode: ActorMode, step_timeout: float, timeout: float) -> tuple[float, int]:
    """:func:`fault_mcpp`, tried up to 3 times while the step timed out before it started: the
    timeout also covers the actor's start, which a busy machine can make longer."""
    for _ in range(2):
        try:
            return fault_mcpp(fault, mode, step_timeout, timeout)
        except StartedLate:
            pass
    return fault_mcpp(fault, mode, step_timeout, timeout)


def fault_baseline(fault: str, step_timeout: float) -> tuple[float, int]:
    """Run ``fault`` on a one-worker ProcessPoolExecutor; return (detection ms, left)."""
    before = descendants()
    with open_baseline(1) as submit:
        pid = submit(workloads.getpid, {}).result()
        task = fault_task(fault, step_timeout)
        submitted = time.time()
        future = submit(task.fn, dict(task.args))
        if fault == "raise":
            exc = future.exception()
            took = time.time() - float(str(exc))
        elif fault == "daemon":
            returned = float(future.result())
            took = time.time() - returned
        elif fault in ("timeout", "shell_timeout"):
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
        "processes_left": (
            "new descendants of the benchmark (a subreaper, so orphans count) right after "
            "each run; must be 0"
        ),
    }
    warm_up(args)
    figures: Figures = {}
    for mode in args.modes:
        figures[mode] = {}
        for fault in FAULTS:
            mine = [
                retried(fault, mode, args.step_timeout, args.timeout) for _ in range(args.repeat)
            ]
            base = [fault_baseline(fault, args.step_timeout) for _ in range(args.repeat)]
            figures[mode][fault] = {
                "detect_ms": figure("ms", [m[0] for m in mine], [b[0] for b in base]),
                "processes_left": figure("", [m[1] for m in mine], [b[1] for b in base]),
            }
    output(document("faults", args, figures, notes), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
