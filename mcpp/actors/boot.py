"""The first module of an actor started as a fresh interpreter (tractor's ``'trio'`` method).

``python -m mcpp.actors.boot --uid "('NAME', 'UUID')" ...`` runs tractor's child entry
(``mcpp.actors.tractor._child``, same arguments). For the coordinator it first starts the fork
server its steps and workers are forked from (:mod:`mcpp.actors.spawner.early`), so that the
two interpreters import the runtime at the same time instead of one after the other. Nothing
but the standard library is imported before that.

When the actor's runtime has ended, the process leaves with ``os._exit`` after flushing its
output: everything it owns was closed inside the runtime (its children ended, its folders
removed, its cache closed), and the interpreter's orderly shutdown of the whole runtime took
tens of milliseconds off the end of every run.
"""

from __future__ import annotations

import itertools
import os
import runpy
import signal
import sys
from collections.abc import Sequence

__all__ = ["COORDINATOR", "FORK_SERVER_PRELOAD", "is_coordinator"]

COORDINATOR = "mcpp-coordinator"
FORK_SERVER_PRELOAD = ("mcpp.actors.step",)


def is_coordinator(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (a child's arguments) names the coordinator in ``--uid``."""
    for flag, value in itertools.pairwise(argv):
        if flag == "--uid":
            return value.startswith(f"({COORDINATOR!r},")
    return False


if __name__ == "__main__":
    # Ctrl-C reaches the terminal's whole process group: the supervisor alone acts on it. From
    # the first line, so an interrupt while the runtime is imported shows no traceback; the
    # fork server started next inherits it through exec.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if is_coordinator(sys.argv[1:]):
        from mcpp.actors.spawner import early

        early.launch(FORK_SERVER_PRELOAD)
    try:
        runpy.run_module("mcpp.actors.tractor._child", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        if isinstance(exit_.code, int) or exit_.code is None:
            code = exit_.code or 0
        else:  # sys.exit("message"): printed, as the interpreter would
            print(exit_.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
