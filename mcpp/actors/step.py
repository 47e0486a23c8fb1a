"""The step actor endpoint: runs step functions for the coordinator.

This module is the only one a step or worker actor exposes to tractor. Its endpoint checks the
parent channel before it resolves or runs anything: every connection to the actor is
authenticated with the run's key, and a connection other than the parent's is refused.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from functools import partial
from typing import Any

import msgspec
import outcome
import trio

from mcpp import calls, protocol, spill
from mcpp.actors import contain, tractor
from mcpp.actors.capture import OutputCapture, with_stderr_tail
from mcpp.actors.parentwatch import watch_parent
from mcpp.actors.runner import BatchRunner
from mcpp.errors import ProtocolError
from mcpp.protocol import CancelStep, ErrorInfo, StartBatch, StartStep

__all__ = ["HEARTBEAT_INTERVAL", "run_start", "serve"]

HEARTBEAT_INTERVAL = 1.0


_MCPP = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
INTERNAL_PATHS = (
    *(
        os.path.dirname(path) + os.sep
        for path in (trio.__file__, outcome.__file__, msgspec.__file__)
        if path is not None
    ),
    _MCPP,
    "<frozen importlib.",
)
USER_PATHS = (os.path.join(_MCPP, "benchmarks") + os.sep,)  # mcpp's own steps, not runtime


def _internal(filename: str) -> bool:
    return filename.startswith(INTERNAL_PATHS) and not filename.startswith(USER_PATHS)


def error_info(exc: BaseException) -> ErrorInfo:
    """Box ``exc``: its type name, message and the traceback of the user's frames.

    Frames of mcpp's runtime (the step runner, the target loader, the API), trio, outcome and
    importlib are left out, in the exception and in those it chains: they are the same for
    every step and hide the user's own (the missing ``__main__`` guard reads as the user's
    ``wf.run()`` line, then the fix).
    """
    summary = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    pending = [summary]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        frames = [f for f in part.stack if not _internal(f.filename)]
        part.stack = traceback.StackSummary.from_list(frames)
        pending += [e for e in (part.__cause__, part.__context__) if e is not None]
    return ErrorInfo(type=type(exc).__name__, message=str(exc), traceback="".join(summary.format()))


async def call(start: StartStep) -> msgspec.Raw:
    """Resolve and call the step function of ``start``; return its encoded result.

    Sync functions run in a worker thread (abandoned on cancellation: the coordinator kills the
    process if the thread does not stop); async functions run in this event loop.
    """
    from mcpp.workflow.targets import resolve

    fn = resolve(start.target, import_paths=start.import_paths, main_path=start.main_path)
    kwargs = spill.decode_arguments(start.kwargs)
    value = await calls.call(fn, kwargs=kwargs, abandon_on_cancel=True)
    encode = partial(protocol.encode_result, value, step=start.step, spill_dir=start.spill_dir)
    return await trio.to_thread.run_sync(encode)


async def run_start(
    start: StartStep,
    send: Any,
    running: dict[str, trio.CancelScope],
    capture: OutputCapture | None = None,
) -> None:
    """Run one attempt and send StepStarted, then StepSucceeded or StepFailed.

    Processes the step left running are ended before the outcome is sent, and counted in it.
    Sends nothing more if the attempt is cancelled (the coordinator records that itself).
    With ``capture``, the attempt's output goes to its log (resolving the target included: a
    module's import-time output is the step's); a failure carries its stderr tail.
    """
    try:
        if capture is not None:
            capture.begin(start)
        await run_attempt(start, send, running, capture)
    finally:
        if capture is not None:
            capture.end(settle=False)  # cancelled: stop capturing without waiting


async def run_attempt(
    start: StartStep,
    send: Any,
    running: dict[str, trio.CancelScope],
    capture: OutputCapture | None,
) -> None:
    """:func:`run_start` inside the attempt's capture."""
    began = time.perf_counter()
    await send(
        protocol.encode(
            protocol.StepStarted(
                step=start.step, attempt=start.attempt, pid=os.getpid(), at=time.time()
            )
        )
    )
    outcome: protocol.StepSucceeded | protocol.StepFailed | None = None
    with trio.CancelScope() as scope:
        running[start.step] = scope
        try:
            result = await call(start)
        except Exception as exc:
            outcome = protocol.StepFailed(
                step=start.step,
                attempt=start.attempt,
                error=error_info(exc),
                duration_s=time.perf_counter() - began,
            )
        else:
            outcome = protocol.StepSucceeded(
                step=start.step,
                attempt=start.attempt,
                result=result,
                duration_s=time.perf_counter() - began,
            )
        finally:
            running.pop(start.step, None)
    if outcome is not None and not scope.cancelled_caught:
        ended = await trio.to_thread.run_sync(contain.end_descendants)
        if ended:
            outcome = msgspec.structs.replace(outcome, ended_processes=ended)
        if capture is not None:
            outcome = with_stderr_tail(outcome, await trio.to_thread.run_sync(capture.end))
        await send(protocol.encode(outcome))


async def heartbeat(send: Any, running: dict[str, trio.CancelScope]) -> None:
    """Send a Heartbeat every HEARTBEAT_INTERVAL seconds."""
    while True:
        await trio.sleep(HEARTBEAT_INTERVAL)
        await send(
            protocol.encode(
                protocol.Heartbeat(pid=os.getpid(), at=time.time(), steps=tuple(running))
            )
        )


@tractor.context
async def serve(ctx: tractor.Context) -> None:
    """Serve StartStep, StartBatch and CancelStep messages on one stream until it closes.

    A StartStep (per-step actors) runs at once, a sync function in a thread of its own so the
    event loop stays free. The steps of StartBatch messages (pool workers) run one at a time,
    in order, on a :class:`BatchRunner`.

    Only the actor's parent may open it: anyone else gets ProtocolError in this context before
    any code is resolved or run.

    The actor is a child subreaper: whatever a step starts stays its descendant, and is ended
    when the step's attempt ends and, at the latest, when this context ends.
    """
    actor = tractor.current_actor()
    contain.become_subreaper()
    watch_parent(forked=actor._spawn_method == "fork_server")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor alone handles Ctrl-C
    if ctx.chan is not actor._parent_chan:
        raise ProtocolError("refused: steps run only for this actor's parent")
    capture = OutputCapture()  # first: steps and what they start never write to the terminal
    await ctx.started(os.getpid())
    running: dict[str, trio.CancelScope] = {}
    try:
        await serve_stream(ctx, running, capture)
    finally:
        contain.end_descendants()  # blocking on purpose: nothing else may run meanwhile


async def serve_stream(
    ctx: tractor.Context, running: dict[str, trio.CancelScope], capture: OutputCapture
) -> None:
    """:func:`serve`'s loop over the stream."""
    runner: BatchRunner | None = None
    async with ctx.open_stream() as stream, trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat, stream.send, running)
        async for raw in stream:
            message = protocol.to_step.decode(raw)
            match message:
                case StartStep():
                    nursery.start_soon(run_start, message, stream.send, running, capture)
                case StartBatch():
                    if runner is None:
                        runner = BatchRunner(stream.send, error_info, message.run_dir, capture)
                        nursery.start_soon(runner.flush)
                    for start in message.steps:
                        runner.submit(start)
                case CancelStep():
                    scope = running.get(message.step)
                    if scope is not None:
                        scope.cancel()
        nursery.cancel_scope.cancel()
