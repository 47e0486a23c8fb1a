"""The actor layer: the only part of mcpp that touches the actor runtime.

The runtime is mcpp's own copy of tractor 0.1.0a5 (``mcpp.actors.tractor``; see its README for
what mcpp changed). Everything outside this package reaches actors through :func:`open_run`.
The names below load on first use, so that a process started as ``python -m mcpp.actors.X``
(the fork server) imports only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcpp.actors.root import RunChannel, inside_actor, open_run

__all__ = ["RunChannel", "inside_actor", "open_run"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'mcpp.actors' has no attribute {name!r}")
    from mcpp.actors import root

    return getattr(root, name)
