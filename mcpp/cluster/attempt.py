"""``python -m mcpp.cluster.attempt IN_FD OUT_FD``: one step attempt in a process of its own.

A Dask task (:mod:`mcpp.cluster.task`) starts this process on its worker, writes one
``StartStep`` frame to ``IN_FD`` and reads ``StepStarted`` then the outcome from ``OUT_FD``.
The attempt runs on mcpp's step runner (:func:`mcpp.actors.step.run_start`, as in a per-step
actor): a sync step in a thread, an async one in the event loop, the processes it left
running ended and counted before the outcome is written.

The process is a child subreaper, so what the step starts (daemons included) stays below it,
and it watches its starter: if the Dask worker dies, it ends its descendants and exits.
"""

from __future__ import annotations

import os
import signal
import sys

import trio

from mcpp import protocol
from mcpp.actors import contain
from mcpp.actors.parentwatch import watch_parent
from mcpp.cluster.frames import read_frame, write_frame
from mcpp.protocol import StartStep

__all__ = ["main"]


async def run(start: StartStep, out_fd: int) -> None:
    """Run ``start`` and write its frames to ``out_fd``."""
    from mcpp.actors.step import run_start

    async def send(data: bytes) -> None:
        write_frame(out_fd, data)

    await run_start(start, send, {})


def main(argv: list[str]) -> int:
    """Run the attempt of the StartStep read from ``argv[1]``; frames go to ``argv[2]``.

    Returns 0 once the outcome is written; 2 for bad arguments or a frame that is not a
    ``StartStep`` (nothing runs then).
    """
    watch_parent()
    contain.become_subreaper(sweep=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the task ends this process, not Ctrl-C
    try:
        in_fd, out_fd = int(argv[1]), int(argv[2])
    except (IndexError, ValueError):
        print("usage: python -m mcpp.cluster.attempt IN_FD OUT_FD", file=sys.stderr)
        return 2
    data = read_frame(in_fd)
    os.close(in_fd)
    start = protocol.to_step.decode(data) if data is not None else None
    if not isinstance(start, StartStep):
        print("mcpp.cluster.attempt: expected one StartStep frame", file=sys.stderr)
        return 2
    trio.run(run, start, out_fd)
    os.close(out_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
