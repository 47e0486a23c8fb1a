"""The coordinator's fork server, started before the coordinator imports its runtime.

A fresh interpreter spends ~0.1 s importing trio and the actor runtime; the coordinator and its
fork server each pay it, one after the other, on the start-up path of every run. Started from
the coordinator's first line (:mod:`mcpp.actors.boot`), the server's interpreter starts while
the coordinator's imports run, on another core. Only the standard library is imported here.

The server is this process's child, as :meth:`~mcpp.actors.spawner.parent.Spawner.start`
would make it, holding the other end of a socketpair; if this process dies before it takes the
server, the socket closes and the server exits (EOF).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["launch", "take"]

_launched: tuple[tuple[str, ...], subprocess.Popen[bytes], socket.socket] | None = None


def command(fd: int, preload: Sequence[str]) -> list[str]:
    """The command line of a server on socket ``fd`` that imports ``preload``."""
    return [sys.executable, "-m", "mcpp.actors.spawner", "--fd", str(fd),
            "--preload", ",".join(preload)]  # fmt: skip


def launch(preload: Sequence[str]) -> None:
    """Start a server that imports ``preload``, to be taken by :func:`take`. Raises OSError
    if it cannot be started."""
    global _launched
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        popen = subprocess.Popen(command(theirs.fileno(), preload), pass_fds=(theirs.fileno(),))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    _launched = (tuple(preload), popen, ours)


def take(preload: Sequence[str]) -> tuple[subprocess.Popen[bytes], socket.socket] | None:
    """The server :func:`launch` started, if it preloads ``preload`` and was not taken yet."""
    global _launched
    if _launched is None or _launched[0] != tuple(preload):
        return None
    _, popen, sock = _launched
    _launched = None
    return popen, sock
