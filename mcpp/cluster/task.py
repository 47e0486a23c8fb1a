"""The Dask task of one step attempt: :func:`run_attempt`, run by a Dask worker.

Dask cannot stop running code (``Future.cancel`` leaves it running and holding its thread), so
the task runs the attempt in a child process (:mod:`mcpp.cluster.attempt`) and watches it:

- the child's ``StepStarted`` is relayed to the coordinator at once (``Worker.log_event`` on
  the run's topic, with the worker's address), and the step's timeout counts from it;
- on a timeout, or once the task is cancelled in Dask (the coordinator cancelled its future,
  or the coordinator's client is gone, so the scheduler released the key and the worker marks
  the running task ``cancelled``: checked every :data:`TICK` seconds), the child and every
  process below it get SIGTERM, then SIGKILL after :data:`mcpp.actors.contain.GRACE`; the
  Dask worker goes on. A cancel is confirmed to the coordinator with a ``StepCancelled`` on
  the run's topic once the processes are gone;
- a child that dies without an outcome fails the attempt naming its signal or exit code.

The Dask worker process becomes a child subreaper (without sweeping), so the processes of a
child that was killed re-parent to it and are ended after the attempt: every child of the
worker that is not a running attempt's process. Run mcpp's tasks on workers of their own.

At most once per attempt: the first run of the task sets the attempt's claim event. If Dask
runs the task again (its worker was lost mid-attempt and the scheduler re-ran the task), the
run sees the claim and reports that the worker was lost instead of running the step twice;
mcpp's retry policy decides what follows. The task never raises into Dask: what it returns
is always a msgspec-encoded ``StepSucceeded``, ``StepFailed`` or ``StepCancelled``.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from mcpp import protocol
from mcpp.actors import contain
from mcpp.cluster.frames import read_frame, write_frame
from mcpp.protocol import ErrorInfo, StartStep, StepCancelled, StepFailed, StepStarted

__all__ = ["TICK", "claim_name", "run_attempt"]

TICK = 0.05  # how often the child's exit, the deadline and a cancel are checked
LOST = "ProcessDied"

_lock = threading.Lock()
_running: set[int] = set()  # pids of this worker's attempt processes


def claim_name(key: str) -> str:
    """The name of the event the first run of task ``key`` sets."""
    return f"{key}-claimed"


def _cancelled(worker: Any, key: str) -> bool:
    """True once the worker no longer wants task ``key`` run (its key was released)."""
    task = worker.state.tasks.get(key)
    return task is None or task.state == "cancelled"


def run_attempt(start_bytes: bytes, key: str, topic: str) -> bytes:
    """Run the attempt encoded in ``start_bytes`` (a ``StartStep``); return its outcome bytes.

    ``key`` is this task's Dask key; ``topic`` the run's event topic (the coordinator
    subscribed to it). Never raises: an error of the task itself is a failed attempt
    carrying that error.
    """
    start = protocol.to_step.decode(start_bytes)
    if not isinstance(start, StartStep):
        raise TypeError(f"expected a StartStep, got {type(start).__name__}")
    began = time.perf_counter()
    try:
        return protocol.encode(_run(start, start_bytes, key, topic))
    except Exception as exc:
        error = ErrorInfo(
            type=type(exc).__name__,
            message=f"the Dask task of step {start.step!r} failed: {exc}",
            traceback=traceback.format_exc(),
        )
        return protocol.encode(
            StepFailed(
                step=start.step,
                attempt=start.attempt,
                error=error,
                duration_s=time.perf_counter() - began,
            )
        )


def _failed(start: StartStep, kind: str, message: str, began: float, **extra: Any) -> StepFailed:
    return StepFailed(
        step=start.step,
        attempt=start.attempt,
        error=ErrorInfo(type=kind, message=message),
        duration_s=time.perf_counter() - began,
        **extra,
    )


def _spawn(start_bytes: bytes) -> tuple[subprocess.Popen[bytes], int]:
    """Start the attempt process, hand it ``start_bytes``; return it and its frames' fd."""
    to_child, child_in = os.pipe()
    child_out, from_child = os.pipe()
    try:
        with _lock:
            child = subprocess.Popen(
                [sys.executable, "-m", "mcpp.cluster.attempt", str(to_child), str(from_child)],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
            )
            _running.add(child.pid)
    finally:
        os.close(to_child)
        os.close(from_child)
    try:
        write_frame(child_in, start_bytes)
    except BrokenPipeError:
        pass  # it died at once: its exit code tells why
    finally:
        os.close(child_in)
    return child, child_out


def _orphans() -> list[int]:
    with _lock:
        return contain.below(set(_running))


def _end_tree(pid: int) -> None:
    """End ``pid`` and every process below it (SIGTERM, SIGKILL after the grace period)."""
    contain.end(lambda: [p for p in (pid, *contain.tree(pid)) if p != os.getpid()], reap=False)


def _run(start: StartStep, start_bytes: bytes, key: str, topic: str) -> protocol.Message:
    from distributed import Event, get_worker

    began = time.perf_counter()
    worker = get_worker()
    claim = Event(claim_name(key))
    if claim.is_set():
        text = (
            f"the Dask worker running step {start.step!r} (attempt {start.attempt}) was lost; "
            "Dask ran its task again, mcpp did not run the step twice"
        )
        return _failed(start, LOST, text, began)
    claim.set()
    contain.become_subreaper(sweep=False)
    child, frames = _spawn(start_bytes)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def read() -> None:
        while (frame := read_frame(frames)) is not None:
            inbox.put(frame)
        inbox.put(None)

    reader = threading.Thread(target=read, name="mcpp-attempt-reader", daemon=True)
    reader.start()
    outcome: protocol.Message | None = None
    deadline: float | None = None
    try:
        while outcome is None:
            try:
                frame = inbox.get(timeout=TICK)
            except queue.Empty:
                frame = b""
            if frame is None:  # the child closed its end: it is exiting or dead
                break
            if frame:
                message = protocol.from_step.decode(frame)
                if isinstance(message, StepStarted):
                    if start.timeout is not None:
                        deadline = time.monotonic() + start.timeout
                    worker.log_event(topic, [worker.address, frame])
                else:
                    outcome = message
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                _end_tree(child.pid)
                text = f"step {start.step!r} timed out after {start.timeout:g} s"
                outcome = _failed(start, "StepTimeout", text, began, timed_out=True)
            elif child.poll() is not None and inbox.empty():
                break  # dead, though something it started may hold the pipe open
            elif _cancelled(worker, key):
                _end_tree(child.pid)
                outcome = StepCancelled(
                    step=start.step,
                    attempt=start.attempt,
                    reason="cancelled",
                    duration_s=time.perf_counter() - began,
                )
        if outcome is None:
            from mcpp.actors.launch import process_death

            code = child.wait()
            outcome = _failed(start, LOST, process_death(code, child.pid), began)
        else:
            try:
                child.wait(timeout=contain.GRACE)
            except subprocess.TimeoutExpired:
                _end_tree(child.pid)
    finally:
        _end_tree(child.pid)
        child.wait()
        with _lock:
            _running.discard(child.pid)
        contain.end(_orphans)
        reader.join(timeout=contain.GRACE)
        os.close(frames)
    if isinstance(outcome, StepCancelled):  # its processes are gone: the coordinator waits
        worker.log_event(topic, [worker.address, protocol.encode(outcome)])
    return outcome
