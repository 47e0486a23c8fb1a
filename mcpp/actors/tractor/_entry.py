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
Sub-process entry points.

"""
from functools import partial
from typing import Tuple, Any
import signal

import trio  # type: ignore

from .log import get_console_log, get_logger
from . import _state


log = get_logger(__name__)

# mcpp: how long a failed actor waits to see its starter gone before it lets the error out
# (``parentwatch.starter_left``): a killed parent's sockets close a moment before it exits.
STARTER_GRACE = 1.0


def _trio_main(

    actor: 'Actor',  # type: ignore
    *,
    parent_addr: Tuple[str, int] = None,

) -> None:
    '''
    Entry point for a `trio_run_in_process` subactor.

    '''
    log.info(f"Started new trio process for {actor.uid}")

    if actor.loglevel is not None:
        log.info(
            f"Setting loglevel for {actor.uid} to {actor.loglevel}")
        get_console_log(actor.loglevel)

    log.info(
        f"Started {actor.uid}")

    _state._current_actor = actor

    log.debug(f"parent_addr is {parent_addr}")
    trio_main = partial(
        actor._async_main,
        parent_addr=parent_addr
    )

    try:
        trio.run(trio_main)
    except KeyboardInterrupt:
        log.warning(f"Actor {actor.uid} received KBI")
    except BaseException:
        # mcpp: an actor whose runtime failed because its starter is gone (the connection
        # back to a parent killed during start-up is refused, or breaks mid-handshake) leaves
        # quietly, as the parent watch would make it a moment later, with its exit code: a
        # traceback would land on the user's terminal after the shell returned. With the
        # starter alive the error propagates (and is printed) as before.
        from mcpp.actors import parentwatch
        if parentwatch.starter_left(within=STARTER_GRACE):
            parentwatch.exit_for_starter()
        raise

    finally:
        log.info(f"Actor {actor.uid} terminated")
