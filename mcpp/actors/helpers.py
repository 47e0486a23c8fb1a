"""The coordinator's one helper process, the fork server: started first, stopped last."""

from __future__ import annotations

from functools import partial

import trio

from mcpp.actors import contain
from mcpp.actors.spawner.parent import Spawner
from mcpp.actors.tractor import _spawn

__all__ = ["start_helpers", "stop_helpers"]


async def start_helpers() -> Spawner:
    """Start the fork server that step and worker actors are forked from; return it.

    A fresh interpreter spends ~0.3 s of CPU importing trio and the actor runtime; a fork of a
    server that has them imported starts in a few milliseconds. The server
    (:mod:`mcpp.actors.spawner`) is reachable only through its socketpair to this process and
    speaks msgpack: nothing is pickled. It is the only child the coordinator starts itself:
    any other child is an orphan of a dead actor. A forked actor's parent is the server, so it
    watches the server's parent to know when to exit (``mcpp.actors.parentwatch``).
    """
    spawner = await Spawner.start(["mcpp.actors.step"])
    _spawn.set_fork_server(spawner)
    _spawn.try_set_start_method("fork_server")
    return spawner


async def stop_helpers(spawner: Spawner) -> None:
    """End every process below the coordinator: the actors (if any is left), the fork server
    (its socket closed), then whatever is left."""
    await trio.to_thread.run_sync(partial(contain.end_descendants, keep={spawner.pid}))
    _spawn.set_fork_server(None)
    await spawner.aclose()
    await trio.to_thread.run_sync(contain.end_descendants)
