# tractor: structured concurrent "actors".
# Copyright 2018-eternity Tyler Goodlet.

# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU Affero General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.

# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU Affero General Public License for more details.

# You should have received a copy of the GNU Affero General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""
Machinery for actor process spawning using multiple backends.

"""
from __future__ import annotations
import os
import sys
from typing import (
    Any, Optional, Callable, TypeVar, TYPE_CHECKING
)
from collections.abc import Awaitable

import msgspec
import trio
from trio import TaskStatus

from . import _state
from ._state import (
    current_actor,
    is_root_process,
)

from .log import get_logger
from ._portal import Portal
from ._actor import Actor
from ._exceptions import ActorFailure


log = get_logger('tractor')

_spawn_method: str = "trio"

# mcpp: the 'fork_server' start method forks children from a preloaded server process
# (``mcpp.actors.spawner``) that mcpp starts and hands in here; the child's spec travels as
# msgpack over the server's private socketpair. multiprocessing's start methods are gone: they
# pickle the child's spawn data.
_fork_server: Any = None
FORK_ENTRY = "mcpp.actors.tractor._child:fork_main"


def set_fork_server(server: Any) -> None:
    '''Fork children of the 'fork_server' start method from ``server`` (None: none).'''
    global _fork_server
    _fork_server = server


def try_set_start_method(name: str) -> None:
    '''
    Set the method for process starting, aka the "actor spawning backend": ``'trio'`` (a
    fresh interpreter, ``python -m mcpp.actors.tractor._child``) or ``'fork_server'`` (a fork
    of the server given to :func:`set_fork_server`).

    '''
    global _spawn_method
    if name not in ('trio', 'fork_server'):
        raise ValueError(
            f"Spawn method `{name}` is invalid please choose one of ['trio', 'fork_server']"
        )
    _spawn_method = name


async def exhaust_portal(

    portal: Portal,
    actor: Actor

) -> Any:
    '''
    Pull final result from portal (assuming it has one).

    If the main task is an async generator do our best to consume
    what's left of it.
    '''
    try:
        log.debug(f"Waiting on final result from {actor.uid}")

        # XXX: streams should never be reaped here since they should
        # always be established and shutdown using a context manager api
        final = await portal.result()

    except (Exception, BaseExceptionGroup) as err:
        # we reraise in the parent task via a ``trio.MultiError``
        return err
    except trio.Cancelled as err:
        # lol, of course we need this too ;P
        # TODO: merge with above?
        log.warning(f"Cancelled result waiter for {portal.actor.uid}")
        return err
    else:
        log.debug(f"Returning final result: {final}")
        return final


async def cancel_on_completion(

    portal: Portal,
    actor: Actor,
    errors: dict[tuple[str, str], Exception],

) -> None:
    '''
    Cancel actor gracefully once it's "main" portal's
    result arrives.

    Should only be called for actors spawned with `run_in_actor()`.

    '''
    # if this call errors we store the exception for later
    # in ``errors`` which will be reraised inside
    # a MultiError and we still send out a cancel request
    result = await exhaust_portal(portal, actor)
    if isinstance(result, Exception):
        errors[actor.uid] = result
        log.warning(
            f"Cancelling {portal.channel.uid} after error {result}"
        )

    else:
        log.runtime(
            f"Cancelling {portal.channel.uid} gracefully "
            f"after result {result}")

    # cancel the process now that we have a final result
    await portal.cancel_actor()


async def do_hard_kill(
    proc: trio.Process,
    terminate_after: int = 3,
) -> None:
    # NOTE: this timeout used to do nothing since we were shielding
    # the ``.wait()`` inside ``new_proc()`` which will pretty much
    # never release until the process exits, now it acts as
    # a hard-kill time ultimatum.
    # mcpp: the same for a ``trio.Process`` and a fork server's ``ForkedProcess``: wait for
    # the process to exit, and kill it after ``terminate_after`` seconds.
    with trio.move_on_after(terminate_after) as cs:
        cs.shield = True
        await proc.wait()

    if cs.cancelled_caught:
        # mcpp: a warning, not critical: mcpp runs tractor's console log at 'critical' (its
        # own reports say what failed), and a kill on tear-down is not for the user's terminal
        log.warning(f"#ZOMBIE_LORD_IS_HERE: {proc}")
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


async def soft_wait(

    proc: Any,
    wait_func: Callable[
        [Any],
        Awaitable,
    ],
    portal: Portal,

) -> None:
    # Wait for proc termination but **dont' yet** call
    # ``trio.Process.__aexit__()`` (it tears down stdio
    # which will kill any waiting remote pdb trace).
    # This is a "soft" (cancellable) join/reap.
    uid = portal.channel.uid
    try:
        log.cancel(f'Soft waiting on actor:\n{uid}')
        await wait_func(proc)
    except trio.Cancelled:
        # if cancelled during a soft wait, cancel the child
        # actor before entering the hard reap sequence
        # below. This means we try to do a graceful teardown
        # via sending a cancel message before getting out
        # zombie killing tools.
        async with trio.open_nursery() as n:
            n.cancel_scope.shield = True

            async def cancel_on_proc_deth():
                '''
                Cancel the actor cancel request if we detect that
                that the process terminated.

                '''
                await wait_func(proc)
                n.cancel_scope.cancel()

            n.start_soon(cancel_on_proc_deth)
            await portal.cancel_actor()

            if proc.poll() is None:  # type: ignore
                log.warning(
                    f'Process still alive after cancel request:\n{uid}')

                n.cancel_scope.cancel()
        raise


async def new_proc(

    name: str,
    actor_nursery: 'ActorNursery',  # type: ignore  # noqa
    subactor: Actor,
    errors: dict[tuple[str, str], Exception],

    # passed through to actor main
    bind_addr: tuple[str, int],
    parent_addr: tuple[str, int],
    _runtime_vars: dict[str, Any],  # serialized and sent to _child

    *,

    task_status: TaskStatus[Portal] = trio.TASK_STATUS_IGNORED

) -> None:
    '''
    Create a new ``Process`` using a "spawn method" as (configured using
    ``try_set_start_method()``).

    This routine should be started in a actor runtime task and the logic
    here is to be considered the core supervision strategy.

    '''
    # mark the new actor with the global spawn method
    subactor._spawn_method = _spawn_method
    uid = subactor.uid

    if _spawn_method in ('trio', 'fork_server'):
        spawn_cmd = [
            sys.executable,
            "-m",
            # Hardcode this (instead of using ``_child.__name__`` to avoid a
            # double import warning: https://stackoverflow.com/a/45070583
            # mcpp: through mcpp.actors.boot, which runs ``_child`` (the coordinator's fork
            # server starts first there)
            "mcpp.actors.boot",
            # We provide the child's unique identifier on this exec/spawn
            # line for debugging purposes when viewing the process tree from
            # the OS; it otherwise can be passed via the parent channel if
            # we prefer in the future (for privacy).
            "--uid",
            str(subactor.uid),
            # Address the child must connect to on startup
            "--parent_addr",
            str(parent_addr),
        ]

        if subactor.loglevel:
            spawn_cmd += [
                "--loglevel",
                subactor.loglevel
            ]

        cancelled_during_spawn: bool = False
        proc: Optional[trio.Process] = None
        try:
            try:
                # TODO: needs ``trio_typing`` patch?
                if _spawn_method == 'trio':
                    # mcpp: the child gets this tree's key through an inherited socket
                    auth_fd = _state.auth_socket()
                    spawn_cmd += ["--auth-fd", str(auth_fd), "--parent-pid", str(os.getpid())]
                    try:
                        proc = await trio.lowlevel.open_process(  # type: ignore
                            spawn_cmd, pass_fds=(auth_fd,))
                    finally:
                        os.close(auth_fd)
                else:
                    if _fork_server is None:
                        raise RuntimeError("the 'fork_server' start method has no server")
                    payload = msgspec.msgpack.encode({
                        'name': subactor.name,
                        'uuid': subactor.uid[1],
                        'loglevel': subactor.loglevel,
                        'parent_addr': list(parent_addr),
                        'auth_key': _state.auth_key(),
                    })
                    proc = await _fork_server.spawn(FORK_ENTRY, payload)

                log.runtime(f"Started {proc}")

                # wait for actor to spawn and connect back to us
                # channel should have handshake completed by the
                # local actor by the time we get a ref to it
                event, chan = await actor_nursery._actor.wait_for_peer(
                    subactor.uid)

            except trio.Cancelled:
                cancelled_during_spawn = True
                raise

            # a sub-proc ref **must** exist now
            assert proc

            portal = Portal(chan)
            actor_nursery._children[subactor.uid] = (
                subactor, proc, portal)

            # send additional init params
            await chan.send({
                "_parent_main_data": subactor._parent_main_data,
                "enable_modules": subactor.enable_modules,
                "_arb_addr": subactor._arb_addr,
                "bind_host": bind_addr[0],
                "bind_port": bind_addr[1],
                "_runtime_vars": _runtime_vars,
            })

            # track subactor in current nursery
            curr_actor = current_actor()
            curr_actor._actoruid2nursery[subactor.uid] = actor_nursery

            # resume caller at next checkpoint now that child is up
            task_status.started(portal)

            # wait for ActorNursery.wait() to be called
            with trio.CancelScope(shield=True):
                await actor_nursery._join_procs.wait()

            async with trio.open_nursery() as nursery:
                if portal in actor_nursery._cancel_after_result_on_exit:
                    nursery.start_soon(
                        cancel_on_completion,
                        portal,
                        subactor,
                        errors
                    )

                # This is a "soft" (cancellable) join/reap which
                # will remote cancel the actor on a ``trio.Cancelled``
                # condition.
                await soft_wait(
                    proc,
                    type(proc).wait,
                    portal
                )

                # cancel result waiter that may have been spawned in
                # tandem if not done already
                log.warning(
                    "Cancelling existing result waiter task for "
                    f"{subactor.uid}")
                nursery.cancel_scope.cancel()

        finally:
            # The "hard" reap since no actor zombies are allowed!
            # XXX: do this **after** cancellation/tearfown to avoid
            # killing the process too early.
            if proc:
                log.cancel(f'Hard reap sequence starting for {uid}')
                with trio.CancelScope(shield=True):

                    if cancelled_during_spawn:
                        # mcpp: a child cancelled before it got its init message was told
                        # nothing, has run nothing of its own and would wait for that
                        # message forever: kill it now. Upstream waited 0.5 s here, then 3 s
                        # more in ``do_hard_kill``, for it to exit by itself, logged it as a
                        # zombie and killed it (a run interrupted as workers started took
                        # 3.5 s more to end and printed that log line to the terminal).
                        proc.kill()

                    if proc.poll() is None:
                        log.cancel(f"Attempting to hard kill {proc}")
                        await do_hard_kill(proc)

                    log.debug(f"Joined {proc}")
            else:
                log.warning('Nursery cancelled before sub-proc started')

            if not cancelled_during_spawn:
                # pop child entry to indicate we no longer managing this
                # subactor
                actor_nursery._children.pop(subactor.uid)
