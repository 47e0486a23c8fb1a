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
This is the "bootloader" for actors started using the native trio backend.

"""
import sys
import trio
import argparse
from typing import Optional

import msgspec

from ast import literal_eval

from ._actor import Actor
from ._entry import _trio_main


def parse_uid(arg):
    name, uuid = literal_eval(arg)  # ensure 2 elements
    return str(name), str(uuid)  # ensures str encoding

def parse_ipaddr(arg):
    host, port = literal_eval(arg)
    return (str(host), int(port))


from ._entry import _trio_main


class ForkSpec(msgspec.Struct, frozen=True):
    '''mcpp: what a child of the 'fork_server' start method is told (msgpack, never pickle).'''
    name: str
    uuid: str
    loglevel: Optional[str]
    parent_addr: tuple[str, int]
    auth_key: bytes


def fork_main(payload: bytes) -> int:
    '''mcpp: the entry of a child forked by the fork server (``_spawn.FORK_ENTRY``).'''
    from . import _state
    from mcpp.actors.parentwatch import watch_parent
    watch_parent(forked=True)  # mcpp: from the first line, not once the runtime is up
    spec = msgspec.msgpack.decode(payload, type=ForkSpec)
    _state.set_auth_key(spec.auth_key)
    subactor = Actor(
        spec.name,
        uid=spec.uuid,
        loglevel=spec.loglevel,
        spawn_method="fork_server",
    )
    _trio_main(subactor, parent_addr=spec.parent_addr)
    return 0


if __name__ == "__main__":

    parser = argparse.ArgumentParser()
    parser.add_argument("--uid", type=parse_uid)
    parser.add_argument("--loglevel", type=str)
    parser.add_argument("--parent_addr", type=parse_ipaddr)
    parser.add_argument("--auth-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args()
    # mcpp: exit (ending descendants) when the starter dies, from the first line on
    from mcpp.actors.parentwatch import watch_parent
    watch_parent(parent=args.parent_pid)
    from . import _state
    _state.read_auth_key(args.auth_fd)  # mcpp: this tree's key, from the parent

    subactor = Actor(
        args.uid[0],
        uid=args.uid[1],
        loglevel=args.loglevel,
        spawn_method="trio"
    )

    _trio_main(
        subactor,
        parent_addr=args.parent_addr,
    )
