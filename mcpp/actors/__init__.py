"""The actor layer: the only part of mcpp that imports tractor.

Everything outside this package reaches actors through :func:`open_run`, so a newer tractor
can replace 0.1.0a5 with changes in this folder alone.
"""

import warnings

with warnings.catch_warnings():
    # tractor 0.1.0a5 imports trio.MultiError, deprecated in the trio it needs.
    warnings.filterwarnings("ignore", message="trio.MultiError is deprecated")
    from mcpp.actors import compat

compat.apply()

from mcpp.actors.root import RunChannel, inside_actor, open_run  # noqa: E402

__all__ = ["RunChannel", "inside_actor", "open_run"]
