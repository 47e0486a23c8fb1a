"""The actor layer: the only part of mcpp that touches the actor runtime.

The runtime is mcpp's own copy of tractor 0.1.0a5 (``mcpp.actors.tractor``; see its README for
what mcpp changed). Everything outside this package reaches actors through :func:`open_run`.
"""

from mcpp.actors.root import RunChannel, inside_actor, open_run

__all__ = ["RunChannel", "inside_actor", "open_run"]
