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
tractor: structured concurrent "actors".

"""
from ._ipc import Channel
from ._streaming import (
    Context,
    ReceiveMsgStream,
    MsgStream,
    stream,
    context,
)
from ._discovery import (
    get_arbiter,
    find_actor,
    wait_for_actor,
    query_actor,
)
from ._supervise import open_nursery
from ._state import current_actor, is_root_process
from ._exceptions import (
    RemoteActorError,
    ModuleNotExposed,
    ContextCancelled,
)
from . import msg
from ._root import open_root_actor
from ._portal import Portal


__all__ = [
    'Channel',
    'Context',
    'ContextCancelled',
    'ModuleNotExposed',
    'MsgStream',
    'Portal',
    'ReceiveMsgStream',
    'RemoteActorError',
    'context',
    'current_actor',
    'find_actor',
    'get_arbiter',
    'is_root_process',
    'msg',
    'open_nursery',
    'open_root_actor',
    'query_actor',
    'stream',
    'wait_for_actor',
]
